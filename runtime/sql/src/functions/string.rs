//! String functions: case, trimming, padding, searching, slicing, regular expressions and
//! number formatting.
//!
//! Positions and lengths count characters (Unicode scalar values), not bytes; `numbytes` is the
//! one function that counts UTF-8 bytes. Numbers and booleans passed where text is expected are
//! read in their SQL text form, as eKuiper does.

use std::cell::RefCell;
use std::collections::HashMap;

use regex::Regex;

use super::args::{MAX_STRING_BYTES, any_nil, arg, bad_arg, fail, integer, nil_like, number, text};
use super::{FnCtx, FnError, ScalarDef};
use crate::value::Value;

type R = Result<Value, FnError>;

const fn def(
    name: &'static str,
    min: usize,
    max: Option<usize>,
    call: super::ScalarFn,
    doc: &'static str,
) -> ScalarDef {
    ScalarDef::new("string", name, min, max, call, doc)
}

#[rustfmt::skip]
pub(super) const DEFS: &[ScalarDef] = &[
    def("concat", 1, None, concat, "concat(a, ...): the arguments joined as text (null counts as empty); when all are arrays, one array"),
    def("endswith", 2, Some(2), endswith, "endswith(s, suffix): true when s ends with suffix (false on null)"),
    def("format", 2, Some(3), format, "format(x, digits[, locale]): x as text rounded to digits decimals; with a locale such as en_US, grouped and punctuated for it"),
    def("indexof", 2, Some(2), indexof, "indexof(s, sub): the 0-based character position of sub in s, or -1 (also on null)"),
    def("length", 1, Some(1), length, "length(x): characters in a string, items in an array or object, 0 for null"),
    def("lower", 1, Some(1), lower, "lower(s): s in lower case"),
    def("lpad", 2, Some(2), lpad, "lpad(s, n): s with n spaces added on the left"),
    def("ltrim", 1, Some(1), ltrim, "ltrim(s): s without leading whitespace"),
    def("numbytes", 1, Some(1), numbytes, "numbytes(s): the length of s in UTF-8 bytes (0 for null)"),
    def("regexp_matches", 2, Some(2), regexp_matches, "regexp_matches(s, re): true when the regular expression re matches somewhere in s (false on null)"),
    def("regexp_replace", 3, Some(3), regexp_replace, "regexp_replace(s, re, repl): s with every match of re replaced by repl ($1 and ${name} insert groups)"),
    def("regexp_substr", 2, Some(2), regexp_substr, "regexp_substr(s, re): the first match of re in s, or an empty string"),
    def("regexp_substring", 2, Some(2), regexp_substring, "regexp_substring(s, re): the first match of re in s, or an empty string (same as regexp_substr)"),
    def("reverse", 1, Some(1), reverse, "reverse(s): s with its characters in reverse order"),
    def("rpad", 2, Some(2), rpad, "rpad(s, n): s with n spaces added on the right"),
    def("rtrim", 1, Some(1), rtrim, "rtrim(s): s without trailing whitespace"),
    def("split_value", 3, Some(3), split_value, "split_value(s, sep, i): part i (0-based; negative counts from the end) of s split on sep; an error past the last part"),
    def("startswith", 2, Some(2), startswith, "startswith(s, prefix): true when s starts with prefix (false on null)"),
    def("substring", 2, Some(3), substring, "substring(s, start[, end]): the characters of s from start (0-based) up to end (exclusive) or the end of s"),
    def("trim", 1, Some(1), trim, "trim(s): s without leading and trailing whitespace"),
    def("upper", 1, Some(1), upper, "upper(s): s in upper case"),
];

fn concat(_: &FnCtx<'_>, args: &[Value]) -> R {
    let mut present = args.iter().filter(|v| !v.is_null()).peekable();
    if present.peek().is_some() && present.clone().all(|v| matches!(v, Value::Array(_))) {
        let mut items = Vec::new();
        for v in present {
            if let Value::Array(a) = v {
                items.extend(a.iter().cloned());
            }
        }
        return Ok(Value::array(items));
    }
    let mut out = String::new();
    for i in 0..args.len() {
        out.push_str(&text("concat", args, i)?);
        if out.len() > MAX_STRING_BYTES {
            return Err(fail("concat", "the result is too long"));
        }
    }
    Ok(Value::from(out))
}

/// A two-string predicate that is false when either side is null.
fn string_test(f: &str, args: &[Value], test: fn(&str, &str) -> bool) -> R {
    if any_nil(args) {
        return Ok(Value::Bool(false));
    }
    Ok(Value::Bool(test(&text(f, args, 0)?, &text(f, args, 1)?)))
}

fn endswith(_: &FnCtx<'_>, args: &[Value]) -> R {
    string_test("endswith", args, |s, t| s.ends_with(t))
}

fn startswith(_: &FnCtx<'_>, args: &[Value]) -> R {
    string_test("startswith", args, |s, t| s.starts_with(t))
}

fn indexof(_: &FnCtx<'_>, args: &[Value]) -> R {
    if arg(args, 0).is_null() || arg(args, 1).is_null() {
        return Ok(Value::Int(-1));
    }
    let s = text("indexof", args, 0)?;
    let sub = text("indexof", args, 1)?;
    Ok(Value::Int(match s.find(&*sub) {
        Some(byte) => s[..byte].chars().count() as i64,
        None => -1,
    }))
}

fn length(_: &FnCtx<'_>, args: &[Value]) -> R {
    let v = arg(args, 0);
    if nil_like(v) {
        return Ok(Value::Int(0));
    }
    Ok(Value::Int(match v {
        Value::Array(items) => items.len() as i64,
        Value::Object(map) => map.len() as i64,
        Value::Bytes(b) => b.len() as i64,
        _ => text("length", args, 0)?.chars().count() as i64,
    }))
}

fn numbytes(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Int(0));
    }
    Ok(Value::Int(match arg(args, 0) {
        Value::Bytes(b) => b.len() as i64,
        _ => text("numbytes", args, 0)?.len() as i64,
    }))
}

/// Applies a text transformation to the single argument; null gives null.
fn map_text(f: &str, args: &[Value], op: fn(&str) -> String) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    Ok(Value::from(op(&text(f, args, 0)?)))
}

fn lower(_: &FnCtx<'_>, args: &[Value]) -> R {
    map_text("lower", args, str::to_lowercase)
}

fn upper(_: &FnCtx<'_>, args: &[Value]) -> R {
    map_text("upper", args, str::to_uppercase)
}

fn trim(_: &FnCtx<'_>, args: &[Value]) -> R {
    map_text("trim", args, |s| s.trim().to_string())
}

fn ltrim(_: &FnCtx<'_>, args: &[Value]) -> R {
    map_text("ltrim", args, |s| s.trim_start().to_string())
}

fn rtrim(_: &FnCtx<'_>, args: &[Value]) -> R {
    map_text("rtrim", args, |s| s.trim_end().to_string())
}

fn reverse(_: &FnCtx<'_>, args: &[Value]) -> R {
    map_text("reverse", args, |s| s.chars().rev().collect())
}

fn pad(f: &str, args: &[Value], left: bool) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let s = text(f, args, 0)?;
    let n = integer(f, args, 1)?;
    let n = usize::try_from(n).map_err(|_| {
        bad_arg(
            f,
            args,
            1,
            format!("the padding must not be negative, got {n}"),
        )
    })?;
    if n > MAX_STRING_BYTES.saturating_sub(s.len()) {
        return Err(bad_arg(f, args, 1, format!("padding {n} is too large")));
    }
    let spaces = " ".repeat(n);
    Ok(Value::from(if left {
        spaces + &s
    } else {
        format!("{s}{spaces}")
    }))
}

fn lpad(_: &FnCtx<'_>, args: &[Value]) -> R {
    pad("lpad", args, true)
}

fn rpad(_: &FnCtx<'_>, args: &[Value]) -> R {
    pad("rpad", args, false)
}

const REGEX_CACHE_SIZE: usize = 64;

thread_local! {
    static REGEXES: RefCell<HashMap<String, Regex>> = RefCell::new(HashMap::new());
}

/// Runs `op` with the compiled `pattern`, compiling it once per thread.
fn with_regex<T>(f: &str, pattern: &str, op: impl FnOnce(&Regex) -> T) -> Result<T, FnError> {
    REGEXES.with(|cell| {
        let mut cache = cell.borrow_mut();
        if let Some(re) = cache.get(pattern) {
            return Ok(op(re));
        }
        let re = Regex::new(pattern).map_err(|e| {
            let reason = e.to_string();
            let reason = reason.lines().rev().find(|l| !l.trim().is_empty());
            fail(
                f,
                format!(
                    "invalid regular expression {pattern:?}: {}",
                    reason.unwrap_or("syntax error").trim()
                ),
            )
        })?;
        let out = op(&re);
        if cache.len() >= REGEX_CACHE_SIZE {
            cache.clear();
        }
        cache.insert(pattern.to_string(), re);
        Ok(out)
    })
}

fn regexp_matches(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Bool(false));
    }
    let s = text("regexp_matches", args, 0)?;
    let pattern = text("regexp_matches", args, 1)?;
    with_regex("regexp_matches", &pattern, |re| {
        Value::Bool(re.is_match(&s))
    })
}

fn regexp_replace(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let s = text("regexp_replace", args, 0)?;
    let pattern = text("regexp_replace", args, 1)?;
    let replacement = text("regexp_replace", args, 2)?;
    with_regex("regexp_replace", &pattern, |re| {
        Value::from(re.replace_all(&s, &*replacement).into_owned())
    })
}

fn regexp_substr(_: &FnCtx<'_>, args: &[Value]) -> R {
    first_match("regexp_substr", args)
}

fn regexp_substring(_: &FnCtx<'_>, args: &[Value]) -> R {
    first_match("regexp_substring", args)
}

fn first_match(f: &str, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let s = text(f, args, 0)?;
    let pattern = text(f, args, 1)?;
    with_regex(f, &pattern, |re| {
        Value::from(re.find(&s).map_or("", |m| m.as_str()))
    })
}

fn split_value(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let s = text("split_value", args, 0)?;
    let sep = text("split_value", args, 1)?;
    let index = integer("split_value", args, 2)?;
    let parts: Vec<&str> = if sep.is_empty() {
        // An empty separator splits between characters.
        s.char_indices()
            .map(|(i, c)| &s[i..i + c.len_utf8()])
            .collect()
    } else {
        s.split(&*sep).collect()
    };
    let len = parts.len() as i64;
    let at = if index < 0 { len + index } else { index };
    if !(0..len).contains(&at) {
        return Err(fail(
            "split_value",
            format!("{index} out of index array (size = {len})"),
        ));
    }
    Ok(Value::from(parts[at as usize]))
}

fn substring(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let s = text("substring", args, 0)?;
    let start = integer("substring", args, 1)?;
    if start < 0 {
        return Err(bad_arg(
            "substring",
            args,
            1,
            format!("the start must not be negative, got {start}"),
        ));
    }
    let end = if args.len() > 2 {
        let end = integer("substring", args, 2)?;
        if end < 0 {
            return Err(bad_arg(
                "substring",
                args,
                2,
                format!("the end must not be negative, got {end}"),
            ));
        }
        if start > end {
            return Err(fail(
                "substring",
                format!("the start {start} is after the end {end}"),
            ));
        }
        Some(end)
    } else {
        None
    };
    let take = end.map_or(usize::MAX, |e| {
        usize::try_from(e - start).unwrap_or(usize::MAX)
    });
    let skip = usize::try_from(start).unwrap_or(usize::MAX);
    Ok(Value::from(
        s.chars().skip(skip).take(take).collect::<String>(),
    ))
}

fn format(_: &FnCtx<'_>, args: &[Value]) -> R {
    const MAX_DIGITS: i64 = 340;
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let x = number("format", args, 0)?;
    let digits = integer("format", args, 1)?;
    if !(0..=MAX_DIGITS).contains(&digits) {
        return Err(bad_arg(
            "format",
            args,
            1,
            if digits < 0 {
                "the decimal places must greater or equal than 0".to_string()
            } else {
                format!("the decimal places must be at most {MAX_DIGITS}, got {digits}")
            },
        ));
    }
    let style = if args.len() > 2 {
        let tag = text("format", args, 2)?;
        Some(locale_style(&tag).ok_or_else(|| {
            fail(
                "format",
                format!("not support for the specific locale:{tag}"),
            )
        })?)
    } else {
        None
    };
    Ok(Value::from(format_number(x, digits as usize, style)))
}

/// How a locale writes numbers: the group separator, the decimal mark, whether groups after
/// the first have two digits (as in India), and whether digits are Arabic-Indic.
#[derive(Debug, Clone, Copy, PartialEq)]
struct NumberStyle {
    group: &'static str,
    decimal: &'static str,
    indian: bool,
    arabic_digits: bool,
}

const fn style(group: &'static str, decimal: &'static str) -> NumberStyle {
    NumberStyle {
        group,
        decimal,
        indian: false,
        arabic_digits: false,
    }
}

const COMMA_POINT: NumberStyle = style(",", ".");
const POINT_COMMA: NumberStyle = style(".", ",");
const SPACE_COMMA: NumberStyle = style("\u{a0}", ",");
const APOSTROPHE_POINT: NumberStyle = style("\u{2019}", ".");
const INDIAN: NumberStyle = NumberStyle {
    indian: true,
    ..COMMA_POINT
};
const ARABIC: NumberStyle = NumberStyle {
    arabic_digits: true,
    ..style("\u{66c}", "\u{66b}")
};

/// The number style of a `language_REGION` tag (also `language-REGION`). A region is required,
/// as eKuiper requires it; a region not listed takes the language's usual style.
fn locale_style(tag: &str) -> Option<NumberStyle> {
    let (lang, region) = tag.split_once(['_', '-'])?;
    if !(2..=3).contains(&lang.len()) || !lang.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    if region.len() != 2 || !region.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let lang = lang.to_ascii_lowercase();
    let region = region.to_ascii_uppercase();
    let by_region = match (lang.as_str(), region.as_str()) {
        ("ar", "DZ" | "LB" | "LY" | "MA" | "TN") | ("fr", "LU") => Some(POINT_COMMA),
        ("ar", "IN") => Some(ARABIC),
        ("de", "AT") | ("en", "ZA") | ("es", "CR") | ("pt", "PT") => Some(SPACE_COMMA),
        ("de" | "it", "CH") | ("de", "LI") => Some(APOSTROPHE_POINT),
        ("en" | "hi" | "gu" | "ta" | "te", "IN") => Some(INDIAN),
        ("es", "DO" | "GT" | "HN" | "MX" | "NI" | "PA" | "PE" | "PR" | "SV" | "US") => {
            Some(COMMA_POINT)
        }
        _ => None,
    };
    by_region.or(match lang.as_str() {
        "ar" | "en" | "gu" | "he" | "hi" | "ja" | "ko" | "mn" | "ms" | "no" | "ta" | "te"
        | "th" | "ur" | "zh" => Some(COMMA_POINT),
        "ca" | "da" | "de" | "el" | "es" | "eu" | "fo" | "gl" | "hr" | "id" | "is" | "it"
        | "mk" | "nl" | "pt" | "ro" | "sl" | "sr" | "tr" | "vi" => Some(POINT_COMMA),
        "be" | "bg" | "cs" | "et" | "fi" | "fr" | "hu" | "lt" | "lv" | "nb" | "pl" | "ru"
        | "sk" | "sq" | "sv" | "uk" => Some(SPACE_COMMA),
        "rm" => Some(APOSTROPHE_POINT),
        _ => None,
    })
}

/// `x` with `digits` decimals (rounded half to even on its exact binary value), grouped when a
/// locale style is given.
fn format_number(x: f64, digits: usize, style: Option<NumberStyle>) -> String {
    if x.is_nan() {
        return "NaN".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "∞" } else { "-∞" }.to_string();
    }
    let plain = format!("{:.*}", digits, x.abs());
    let negative = x.is_sign_negative() && plain.bytes().any(|b| b.is_ascii_digit() && b != b'0');
    let (whole, fraction) = plain.split_once('.').unwrap_or((&plain, ""));
    let mut out = String::with_capacity(plain.len() + plain.len() / 3 + 2);
    if negative {
        out.push('-');
    }
    match style {
        None => {
            out.push_str(whole);
            if !fraction.is_empty() {
                out.push('.');
                out.push_str(fraction);
            }
        }
        Some(style) => {
            out.push_str(&group_digits(whole, style));
            if !fraction.is_empty() {
                out.push_str(style.decimal);
                out.push_str(fraction);
            }
            if style.arabic_digits {
                out = out
                    .chars()
                    .map(|c| match c.to_digit(10) {
                        Some(d) => char::from_u32(0x660 + d).unwrap_or(c),
                        None => c,
                    })
                    .collect();
            }
        }
    }
    out
}

fn group_digits(whole: &str, style: NumberStyle) -> String {
    let len = whole.len();
    let mut out = String::with_capacity(len + len / 2 * style.group.len());
    for (i, c) in whole.chars().enumerate() {
        let left = len - i;
        if i > 0 {
            let boundary = if style.indian && left > 3 {
                (left - 3).is_multiple_of(2)
            } else {
                left.is_multiple_of(3) && (!style.indian || left == 3)
            };
            if boundary {
                out.push_str(style.group);
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[Value]) -> R {
        let meta = Value::Null;
        let ctx = FnCtx {
            now_ms: 0,
            meta: &meta,
            timestamp_ms: 0,
        };
        let def = DEFS.iter().find(|d| d.name == name).expect("function");
        (def.call)(&ctx, args)
    }

    fn s(x: &str) -> Value {
        Value::from(x)
    }

    fn i(x: i64) -> Value {
        Value::Int(x)
    }

    fn text_of(v: R) -> String {
        match v {
            Ok(Value::String(s)) => s.to_string(),
            other => panic!("expected a string, got {other:?}"),
        }
    }

    #[test]
    fn concat_joins_text_or_arrays() {
        assert_eq!(
            text_of(call(
                "concat",
                &[s("a"), i(1), Value::Null, Value::Bool(true)]
            )),
            "a1true"
        );
        assert_eq!(text_of(call("concat", &[Value::Null])), "");
        let arrays = call(
            "concat",
            &[
                Value::array(vec![i(1)]),
                Value::Null,
                Value::array(vec![i(2)]),
            ],
        );
        assert_eq!(arrays, Ok(Value::array(vec![i(1), i(2)])));
        assert!(call("concat", &[s("a"), Value::array(vec![])]).is_err());
    }

    #[test]
    fn prefix_and_suffix_tests() {
        assert_eq!(
            call("endswith", &[s("device01"), s("01")]),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            call("endswith", &[s("device01"), s("x")]),
            Ok(Value::Bool(false))
        );
        assert_eq!(
            call("endswith", &[Value::Null, s("x")]),
            Ok(Value::Bool(false))
        );
        assert_eq!(
            call("startswith", &[s("device01"), s("dev")]),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            call("startswith", &[s("a"), Value::Null]),
            Ok(Value::Bool(false))
        );
        assert!(call("startswith", &[Value::array(vec![i(1)]), s("a")]).is_err());
    }

    #[test]
    fn indexof_counts_characters() {
        assert_eq!(call("indexof", &[s("hello"), s("l")]), Ok(i(2)));
        assert_eq!(call("indexof", &[s("héllo"), s("l")]), Ok(i(2)));
        assert_eq!(call("indexof", &[s("hello"), s("z")]), Ok(i(-1)));
        assert_eq!(call("indexof", &[Value::Null, s("z")]), Ok(i(-1)));
        assert!(call("indexof", &[s("a"), Value::array(vec![i(1)])]).is_err());
    }

    #[test]
    fn length_and_numbytes() {
        assert_eq!(call("length", &[s("héllo")]), Ok(i(5)));
        assert_eq!(call("length", &[Value::array(vec![i(1), i(2)])]), Ok(i(2)));
        assert_eq!(call("length", &[Value::Null]), Ok(i(0)));
        assert_eq!(call("length", &[i(1234)]), Ok(i(4)));
        assert_eq!(call("numbytes", &[s("héllo")]), Ok(i(6)));
        assert_eq!(call("numbytes", &[Value::Null]), Ok(i(0)));
        assert!(call("numbytes", &[Value::object(Default::default())]).is_ok());
        assert!(call("numbytes", &[Value::array(vec![i(1)])]).is_err());
    }

    #[test]
    fn case_and_trimming() {
        assert_eq!(text_of(call("lower", &[s("ÀBc")])), "àbc");
        assert_eq!(call("lower", &[Value::Null]), Ok(Value::Null));
        assert_eq!(text_of(call("upper", &[s("straße")])), "STRASSE");
        assert!(call("upper", &[Value::array(vec![i(1)])]).is_err());
        assert_eq!(text_of(call("trim", &[s(" \t a b \n")])), "a b");
        assert_eq!(call("trim", &[Value::Null]), Ok(Value::Null));
        assert_eq!(text_of(call("ltrim", &[s("\u{a0} a ")])), "a ");
        assert!(call("ltrim", &[Value::array(vec![i(1)])]).is_err());
        assert_eq!(text_of(call("rtrim", &[s(" a \t")])), " a");
        assert_eq!(call("rtrim", &[Value::Null]), Ok(Value::Null));
        assert_eq!(text_of(call("reverse", &[s("abç")])), "çba");
        assert_eq!(text_of(call("reverse", &[s("")])), "");
    }

    #[test]
    fn padding() {
        assert_eq!(text_of(call("lpad", &[s("a"), i(2)])), "  a");
        assert_eq!(text_of(call("rpad", &[s("a"), i(2)])), "a  ");
        assert_eq!(text_of(call("rpad", &[s("a"), i(0)])), "a");
        assert!(call("lpad", &[s("a"), i(-1)]).is_err());
        assert!(call("rpad", &[s("a"), i(i64::MAX)]).is_err());
        assert!(call("lpad", &[s("a"), s("2")]).is_err());
        assert_eq!(call("lpad", &[Value::Null, i(2)]), Ok(Value::Null));
    }

    #[test]
    fn regular_expressions() {
        assert_eq!(
            call("regexp_matches", &[s("abc123"), s(r"\d+")]),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            call("regexp_matches", &[s("abc"), s(r"^\d")]),
            Ok(Value::Bool(false))
        );
        assert_eq!(
            call("regexp_matches", &[Value::Null, s("a")]),
            Ok(Value::Bool(false))
        );
        let err = call("regexp_matches", &[s("a"), s("((")]).unwrap_err().0;
        assert!(
            err.starts_with("regexp_matches: invalid regular expression \"((\""),
            "{err}"
        );
        assert_eq!(
            text_of(call(
                "regexp_replace",
                &[s("a1b22"), s(r"(\d+)"), s("<$1>")]
            )),
            "a<1>b<22>"
        );
        assert!(call("regexp_replace", &[s("a"), s("["), s("")]).is_err());
        assert_eq!(
            call("regexp_replace", &[s("a"), Value::Null, s("")]),
            Ok(Value::Null)
        );
        assert_eq!(
            text_of(call("regexp_substr", &[s("ab12cd34"), s(r"\d+")])),
            "12"
        );
        assert_eq!(
            text_of(call("regexp_substring", &[s("abc"), s(r"\d+")])),
            ""
        );
        assert!(call("regexp_substr", &[s("a"), s("*")]).is_err());
        assert_eq!(text_of(call("regexp_substring", &[s("x9"), s(r"\d")])), "9");
        let err = call("regexp_substring", &[s("a"), s("(")]).unwrap_err().0;
        assert!(err.starts_with("regexp_substring: "), "{err}");
        assert_eq!(
            call("regexp_substring", &[Value::Null, s("a")]),
            Ok(Value::Null)
        );
        // The cache answers repeated patterns the same way.
        for _ in 0..3 {
            assert_eq!(
                call("regexp_matches", &[s("x"), s("x")]),
                Ok(Value::Bool(true))
            );
        }
    }

    #[test]
    fn split_value_indexes_parts() {
        let path = s("/test/device001/message");
        assert_eq!(
            text_of(call("split_value", &[path.clone(), s("/"), i(0)])),
            ""
        );
        assert_eq!(
            text_of(call("split_value", &[path.clone(), s("/"), i(3)])),
            "message"
        );
        assert_eq!(
            text_of(call("split_value", &[path.clone(), s("/"), i(-2)])),
            "device001"
        );
        assert!(call("split_value", &[path.clone(), s("/"), i(4)]).is_err());
        assert!(call("split_value", &[path, s("/"), i(-5)]).is_err());
        assert_eq!(text_of(call("split_value", &[s("añb"), s(""), i(1)])), "ñ");
        assert_eq!(
            call("split_value", &[Value::Null, s("/"), i(0)]),
            Ok(Value::Null)
        );
    }

    #[test]
    fn substring_by_character_range() {
        assert_eq!(text_of(call("substring", &[s("héllo"), i(1), i(3)])), "él");
        assert_eq!(text_of(call("substring", &[s("hello"), i(2)])), "llo");
        assert_eq!(text_of(call("substring", &[s("hello"), i(9)])), "");
        assert_eq!(text_of(call("substring", &[s("hello"), i(3), i(99)])), "lo");
        assert!(call("substring", &[s("hello"), i(-1)]).is_err());
        assert!(call("substring", &[s("hello"), i(3), i(1)]).is_err());
        assert!(call("substring", &[s("hello"), i(0), i(-1)]).is_err());
        assert_eq!(call("substring", &[Value::Null, i(1)]), Ok(Value::Null));
    }

    #[test]
    fn format_numbers() {
        let f = |x: f64| Value::Float(x);
        assert_eq!(
            text_of(call("format", &[f(12332.1234567), i(4)])),
            "12332.1235"
        );
        assert_eq!(
            text_of(call("format", &[f(12332.1234567), i(4), s("en_US")])),
            "12,332.1235"
        );
        assert_eq!(
            text_of(call("format", &[f(123456.78), i(2), s("de_DE")])),
            "123.456,78"
        );
        assert_eq!(
            text_of(call("format", &[f(123456.78), i(2), s("de_CH")])),
            "123’456.78"
        );
        assert_eq!(
            text_of(call("format", &[f(12345678.0), i(0), s("en_IN")])),
            "1,23,45,678"
        );
        assert_eq!(
            text_of(call("format", &[f(-1234.5), i(0), s("en_US")])),
            "-1,234"
        );
        assert_eq!(text_of(call("format", &[f(-0.001), i(2)])), "0.00");
        assert_eq!(
            text_of(call("format", &[i(999), i(1), s("fr_FR")])),
            "999,0"
        );
        assert_eq!(
            text_of(call("format", &[f(12332.2), i(2), s("fr_FR")])),
            "12\u{a0}332,20"
        );
        assert_eq!(
            text_of(call("format", &[f(12332.2), i(2), s("es-cr")])),
            "12\u{a0}332,20"
        );
        assert_eq!(
            text_of(call("format", &[f(12332.1234), i(4), s("ar_IN")])),
            "١٢٬٣٣٢٫١٢٣٤"
        );
        assert_eq!(
            text_of(call("format", &[f(1234.5), i(1), s("en_SG")])),
            "1,234.5"
        );
        assert!(call("format", &[f(1.0), i(-1)]).is_err());
        assert!(call("format", &[f(1.0), i(2), s("en")]).is_err());
        assert!(call("format", &[f(1.0), i(2), s("xx_YY")]).is_err());
        assert!(call("format", &[s("1"), i(2)]).is_err());
        assert_eq!(call("format", &[Value::Null, i(2)]), Ok(Value::Null));
    }

    #[test]
    fn digit_grouping() {
        assert_eq!(group_digits("1", COMMA_POINT), "1");
        assert_eq!(group_digits("123", COMMA_POINT), "123");
        assert_eq!(group_digits("1234", COMMA_POINT), "1,234");
        assert_eq!(group_digits("1234567", COMMA_POINT), "1,234,567");
        let indian = NumberStyle {
            indian: true,
            ..COMMA_POINT
        };
        assert_eq!(group_digits("1234", indian), "1,234");
        assert_eq!(group_digits("123456", indian), "1,23,456");
        assert_eq!(group_digits("999", indian), "999");
    }
}
