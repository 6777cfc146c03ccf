//! Conversion functions: `cast` between SQL types, base64, hexadecimal, character codes,
//! decimal truncation, time zones, and JSON text in and out.

use std::borrow::Cow;

use oort_value::base64;

use super::args::{any_nil, arg, bad_arg, f64_to_i64, fail, integer, number, string, wrong_type};
use super::datetime::{convert_tz, datetime_text, to_seconds};
use super::math::pow10;
use super::{FnCtx, FnError, ScalarDef};
use crate::json;
use crate::value::Value;

type R = Result<Value, FnError>;

const fn def(
    category: &'static str,
    name: &'static str,
    min: usize,
    max: usize,
    call: super::ScalarFn,
    doc: &'static str,
) -> ScalarDef {
    ScalarDef::new(category, name, min, Some(max), call, doc)
}

#[rustfmt::skip]
pub(super) const DEFS: &[ScalarDef] = &[
    def("conversion", "cast", 2, 2, cast, "cast(x, type): x converted to bigint, float, string, boolean, bytea or datetime (RFC 3339 text)"),
    def("conversion", "chr", 1, 1, chr, "chr(x): the character code of x as an integer, from an integer or a one-character string (as eKuiper returns it)"),
    def("conversion", "convert_tz", 2, 2, convert_tz, "convert_tz(t, zone): the datetime t shown in an IANA time zone such as Asia/Shanghai, as RFC 3339 text"),
    def("conversion", "dec2hex", 1, 1, dec2hex, "dec2hex(n): an integer as 0x-prefixed lower-case hexadecimal text"),
    def("conversion", "decode", 2, 2, decode, "decode(s, \"base64\"): the bytes encoded by base64 text s"),
    def("conversion", "encode", 2, 2, encode, "encode(x, \"base64\"): a string or bytes as base64 text"),
    def("conversion", "hex2dec", 1, 1, hex2dec, "hex2dec(s): the integer written in hexadecimal text s, with or without 0x"),
    def("conversion", "to_seconds", 1, 1, to_seconds, "to_seconds(t): the datetime t in whole seconds since the Unix epoch"),
    def("conversion", "trunc", 2, 2, trunc, "trunc(x, digits): x rounded half away from zero to digits decimals, as a float (eKuiper's behaviour)"),
];

#[rustfmt::skip]
pub(super) const JSON_DEFS: &[ScalarDef] = &[
    def("json", "parse_json", 1, 1, parse_json, "parse_json(s): the value written as JSON text in s (null for null or \"null\")"),
    def("json", "to_json", 1, 1, to_json, "to_json(x): x as JSON text"),
];

fn cannot(v: &Value, target: &str) -> FnError {
    fail(
        "cast",
        format!("cannot convert {} to {target}", crate::wording::go_typed(v)),
    )
}

fn cast(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let target = string("cast", args, 1)?;
    let v = arg(args, 0);
    match target.to_ascii_lowercase().as_str() {
        "bigint" => to_bigint(v).map(Value::Int),
        "float" => to_float(v).map(Value::Float),
        "string" => Ok(Value::from(cast_text(v))),
        "boolean" => to_boolean(v).map(Value::Bool),
        "bytea" => to_bytea(v).map(|b| Value::Bytes(b.into())),
        "datetime" => datetime_text("cast", args, 0),
        _ => Err(fail("cast", CAST_TYPES)),
    }
}

/// eKuiper's error for a `cast` to a type it does not know.
pub(crate) const CAST_TYPES: &str = "Expect one of following value for the 2nd parameter: \
     bigint, float, string, boolean, datetime, bytea.";

/// Whether `cast` knows the type `name`.
pub(crate) fn is_cast_type(name: &str) -> bool {
    ["bigint", "float", "string", "boolean", "bytea", "datetime"]
        .iter()
        .any(|t| t.eq_ignore_ascii_case(name))
}

fn to_bigint(v: &Value) -> Result<i64, FnError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Float(x) => f64_to_i64(*x).ok_or_else(|| cannot(v, "bigint")),
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::String(s) => parse_int_literal(s).ok_or_else(|| cannot(v, "bigint")),
        _ => Err(cannot(v, "bigint")),
    }
}

/// An integer written as in Go source: optional sign, then decimal, `0x` hex, `0b` binary,
/// `0o` or leading-zero octal, with `_` allowed between digits.
fn parse_int_literal(s: &str) -> Option<i64> {
    let (negative, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.get(..2).map(str::to_ascii_lowercase);
    let (radix, digits, prefixed) = match lower.as_deref() {
        Some("0x") => (16, &body[2..], true),
        Some("0b") => (2, &body[2..], true),
        Some("0o") => (8, &body[2..], true),
        _ if body.len() > 1 && body.starts_with('0') => (8, &body[1..], true),
        _ => (10, body, false),
    };
    // `_` must sit between digits (or right after a base prefix).
    let bytes = digits.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'_' {
            let after_digit = if i == 0 {
                prefixed
            } else {
                bytes[i - 1] != b'_'
            };
            let before_digit = bytes.get(i + 1).is_some_and(|&n| n != b'_');
            if !after_digit || !before_digit {
                return None;
            }
        }
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    if clean.is_empty() || !clean.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let magnitude = u64::from_str_radix(&clean, radix).ok()?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

fn to_float(v: &Value) -> Result<f64, FnError> {
    match v {
        Value::Int(i) => Ok(*i as f64),
        Value::Float(x) => Ok(*x),
        Value::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        Value::String(s) => {
            let x: f64 = s.parse().map_err(|_| cannot(v, "float"))?;
            // Out-of-range text is an error, not an infinity.
            if x.is_infinite() && !s.to_ascii_lowercase().contains("inf") {
                return Err(cannot(v, "float"));
            }
            Ok(x)
        }
        _ => Err(cannot(v, "float")),
    }
}

/// A value as text the way eKuiper casts it: floats in plain decimal without an exponent,
/// bytes as their (lossy) UTF-8 text, arrays and objects as JSON.
pub(super) fn cast_text(v: &Value) -> String {
    match v {
        Value::Float(x) if x.is_nan() => "NaN".to_string(),
        Value::Float(x) if x.is_infinite() => if *x > 0.0 { "+Inf" } else { "-Inf" }.to_string(),
        Value::Float(x) => x.to_string(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => other.to_text(),
    }
}

fn to_boolean(v: &Value) -> Result<bool, FnError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Int(i) => Ok(*i != 0),
        Value::Float(x) => Ok(*x != 0.0),
        Value::String(s) => match s.as_ref() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            _ => Err(cannot(v, "boolean")),
        },
        _ => Err(cannot(v, "boolean")),
    }
}

/// Bytes, or a string read as base64 when it is valid base64 and as its UTF-8 otherwise.
fn to_bytea(v: &Value) -> Result<Vec<u8>, FnError> {
    match v {
        Value::Bytes(b) => Ok(b.to_vec()),
        Value::String(s) => Ok(base64::decode_padded(s).unwrap_or_else(|| s.as_bytes().to_vec())),
        _ => Err(cannot(v, "bytea")),
    }
}

fn base64_arg(f: &str, args: &[Value]) -> Result<(), FnError> {
    let scheme = string(f, args, 1)?;
    if scheme.eq_ignore_ascii_case("base64") {
        Ok(())
    } else {
        Err(bad_arg(
            f,
            args,
            1,
            format!("unsupported encoding {scheme:?}: only base64 is supported"),
        ))
    }
}

fn encode(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    base64_arg("encode", args)?;
    let input: Cow<'_, [u8]> = match arg(args, 0) {
        Value::String(s) => Cow::Borrowed(s.as_bytes()),
        Value::Bytes(b) => Cow::Borrowed(b),
        _ => return Err(wrong_type("encode", args, 0, "a string or bytes")),
    };
    Ok(Value::from(base64::encode(&input)))
}

fn decode(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    base64_arg("decode", args)?;
    let input = string("decode", args, 0)?;
    let bytes = base64::decode_padded(input)
        .ok_or_else(|| bad_arg("decode", args, 0, format!("invalid base64 text {input:?}")))?;
    Ok(Value::Bytes(bytes.into()))
}

fn trunc(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let x = number("trunc", args, 0)?;
    let digits = match arg(args, 1) {
        Value::Int(d) => *d,
        _ => return Err(wrong_type("trunc", args, 1, "an integer")),
    };
    // Scale, round half away from zero through an integer, and scale back, as eKuiper does.
    let factor = pow10(digits.clamp(-400, 400) as i32);
    let scaled = x * factor;
    let rounded = match f64_to_i64(scaled + 0.5f64.copysign(scaled)) {
        Some(whole) => whole as f64 / factor,
        // Too large to have decimals to drop (or not a number).
        None if x.is_finite() && factor.is_finite() && factor != 0.0 => x,
        None => return Ok(Value::Null),
    };
    Ok(Value::Float(rounded))
}

fn chr(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let v = arg(args, 0);
    let code = match v {
        Value::Int(i) => *i,
        Value::Float(x) => {
            f64_to_i64(*x).ok_or_else(|| fail("chr", format!("{x} is not a character code")))?
        }
        Value::String(s) => match s.as_bytes() {
            [b] => i64::from(*b),
            _ => {
                return Err(fail(
                    "chr",
                    format!("expected a one-character ASCII string, got {s:?}"),
                ));
            }
        },
        _ => return Err(wrong_type("chr", args, 0, "an integer or a string")),
    };
    if char::from_u32(u32::try_from(code).unwrap_or(u32::MAX)).is_none() {
        return Err(fail("chr", format!("{code} is not a character code")));
    }
    Ok(Value::Int(code))
}

fn hex2dec(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let s = string("hex2dec", args, 0)?;
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let digits = body
        .strip_prefix("0x")
        .or_else(|| body.strip_prefix("0X"))
        .unwrap_or(body);
    let invalid = || fail("hex2dec", format!("invalid hexadecimal value {s:?}"));
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let magnitude = u64::from_str_radix(digits, 16).map_err(|_| invalid())?;
    let value = if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    };
    value.map(Value::Int).ok_or_else(invalid)
}

fn dec2hex(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let n = integer("dec2hex", args, 0)?;
    let sign = if n < 0 { "-" } else { "" };
    Ok(Value::from(format!("{sign}0x{:x}", n.unsigned_abs())))
}

fn to_json(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let mut out = Vec::new();
    json::write_value(&mut out, arg(args, 0));
    String::from_utf8(out)
        .map(Value::from)
        .map_err(|_| fail("to_json", "the value cannot be written as JSON"))
}

fn parse_json(_: &FnCtx<'_>, args: &[Value]) -> R {
    let input: &[u8] = match arg(args, 0) {
        Value::Null => return Ok(Value::Null),
        Value::String(s) if &**s == "null" => return Ok(Value::Null),
        Value::String(s) => s.as_bytes(),
        Value::Bytes(b) => b,
        _ => return Err(wrong_type("parse_json", args, 0, "a string")),
    };
    json::parse_value(input).map_err(|e| fail("parse_json", format!("fail to parse json: {e}")))
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
        let def = DEFS
            .iter()
            .chain(JSON_DEFS)
            .find(|d| d.name == name)
            .expect("function");
        (def.call)(&ctx, args)
    }

    fn s(x: &str) -> Value {
        Value::from(x)
    }

    fn i(x: i64) -> Value {
        Value::Int(x)
    }

    fn f(x: f64) -> Value {
        Value::Float(x)
    }

    fn bytes(b: &[u8]) -> Value {
        Value::Bytes(b.into())
    }

    fn cast_to(v: Value, ty: &str) -> R {
        call("cast", &[v, s(ty)])
    }

    #[test]
    fn cast_to_bigint() {
        assert_eq!(cast_to(f(3.9), "bigint"), Ok(i(3)));
        assert_eq!(cast_to(f(-3.9), "bigint"), Ok(i(-3)));
        assert_eq!(cast_to(Value::Bool(true), "bigint"), Ok(i(1)));
        assert_eq!(cast_to(s("42"), "bigint"), Ok(i(42)));
        assert_eq!(cast_to(s("-0x1F"), "bigint"), Ok(i(-31)));
        assert_eq!(cast_to(s("0b101"), "bigint"), Ok(i(5)));
        assert_eq!(cast_to(s("017"), "bigint"), Ok(i(15)));
        assert_eq!(cast_to(s("1_000"), "bigint"), Ok(i(1000)));
        assert_eq!(
            cast_to(s("-9223372036854775808"), "bigint"),
            Ok(i(i64::MIN))
        );
        assert_eq!(cast_to(s("42"), "BigInt"), Ok(i(42)));
        for bad in [
            "1.5",
            "",
            "08",
            "1__0",
            "_1",
            "1_",
            "0x",
            "+-1",
            "0x+1",
            "9223372036854775808",
        ] {
            assert!(cast_to(s(bad), "bigint").is_err(), "{bad:?}");
        }
        assert!(cast_to(f(f64::NAN), "bigint").is_err());
        assert!(cast_to(bytes(b"1"), "bigint").is_err());
        assert_eq!(cast_to(Value::Null, "bigint"), Ok(Value::Null));
    }

    #[test]
    fn cast_to_float() {
        assert_eq!(cast_to(i(3), "float"), Ok(f(3.0)));
        assert_eq!(cast_to(s("2.5e3"), "float"), Ok(f(2500.0)));
        assert_eq!(cast_to(s("-inf"), "float"), Ok(f(f64::NEG_INFINITY)));
        assert_eq!(cast_to(Value::Bool(false), "float"), Ok(f(0.0)));
        assert!(cast_to(s("1e400"), "float").is_err());
        assert!(cast_to(s("abc"), "float").is_err());
        assert!(cast_to(Value::array(vec![i(1)]), "float").is_err());
    }

    #[test]
    fn cast_to_string() {
        assert_eq!(cast_to(i(-5), "string"), Ok(s("-5")));
        assert_eq!(cast_to(f(1e21), "string"), Ok(s("1000000000000000000000")));
        assert_eq!(cast_to(f(2.0), "string"), Ok(s("2")));
        assert_eq!(cast_to(f(f64::INFINITY), "string"), Ok(s("+Inf")));
        assert_eq!(cast_to(Value::Bool(true), "string"), Ok(s("true")));
        assert_eq!(cast_to(bytes(b"hi\xff"), "string"), Ok(s("hi\u{fffd}")));
        assert_eq!(
            cast_to(Value::array(vec![i(1), s("a")]), "string"),
            Ok(s("[1,\"a\"]"))
        );
    }

    #[test]
    fn cast_to_boolean_bytea_and_datetime() {
        assert_eq!(cast_to(s("T"), "boolean"), Ok(Value::Bool(true)));
        assert_eq!(cast_to(s("0"), "boolean"), Ok(Value::Bool(false)));
        assert_eq!(cast_to(f(0.1), "boolean"), Ok(Value::Bool(true)));
        assert!(cast_to(s("yes"), "boolean").is_err());
        assert_eq!(cast_to(s("aGk="), "bytea"), Ok(bytes(b"hi")));
        assert_eq!(cast_to(s("abc"), "bytea"), Ok(bytes(b"abc")));
        assert_eq!(cast_to(bytes(b"\x00"), "bytea"), Ok(bytes(b"\x00")));
        assert!(cast_to(i(1), "bytea").is_err());
        assert_eq!(
            cast_to(i(1_700_000_000_123), "datetime"),
            Ok(s("2023-11-14T22:13:20.123Z"))
        );
        assert_eq!(
            cast_to(s("2019-01-01 08:00:00+08:00"), "datetime"),
            Ok(s("2019-01-01T08:00:00+08:00"))
        );
        assert!(cast_to(Value::Bool(true), "datetime").is_err());
        assert!(cast_to(i(1), "decimal").is_err());
        assert!(call("cast", &[i(1), i(2)]).is_err());
    }

    #[test]
    fn chr_returns_the_code() {
        assert_eq!(call("chr", &[i(65)]), Ok(i(65)));
        assert_eq!(call("chr", &[s("a")]), Ok(i(97)));
        assert_eq!(call("chr", &[f(66.7)]), Ok(i(66)));
        assert!(call("chr", &[s("ab")]).is_err());
        assert!(call("chr", &[s("")]).is_err());
        assert!(call("chr", &[s("é")]).is_err());
        assert!(call("chr", &[i(-1)]).is_err());
        assert!(call("chr", &[i(0x11_0000)]).is_err());
        assert!(call("chr", &[Value::Bool(true)]).is_err());
    }

    #[test]
    fn base64_round_trip() {
        assert_eq!(
            call("encode", &[s("hello"), s("base64")]),
            Ok(s("aGVsbG8="))
        );
        assert_eq!(
            call("encode", &[bytes(b"\xff"), s("BASE64")]),
            Ok(s("/w=="))
        );
        assert!(call("encode", &[i(1), s("base64")]).is_err());
        assert!(call("encode", &[s("x"), s("hex")]).is_err());
        assert_eq!(
            call("decode", &[s("aGVsbG8="), s("base64")]),
            Ok(bytes(b"hello"))
        );
        assert!(call("decode", &[s("aGVsbG8"), s("base64")]).is_err());
        assert!(call("decode", &[s("a==="), s("base64")]).is_err());
        assert!(call("decode", &[s("!!!!"), s("base64")]).is_err());
        assert!(call("decode", &[bytes(b"aGk="), s("base64")]).is_err());
        assert_eq!(call("decode", &[Value::Null, s("base64")]), Ok(Value::Null));
    }

    #[test]
    fn trunc_rounds_like_ekuiper() {
        assert_eq!(call("trunc", &[f(5.4321), i(2)]), Ok(f(5.43)));
        assert_eq!(call("trunc", &[i(3), i(2)]), Ok(f(3.0)));
        assert_eq!(call("trunc", &[f(3.145), i(2)]), Ok(f(3.15)));
        assert_eq!(call("trunc", &[f(-2.5), i(0)]), Ok(f(-3.0)));
        assert_eq!(call("trunc", &[f(1234.0), i(-2)]), Ok(f(1200.0)));
        assert_eq!(call("trunc", &[f(1e300), i(2)]), Ok(f(1e300)));
        assert_eq!(call("trunc", &[f(f64::NAN), i(2)]), Ok(Value::Null));
        assert!(call("trunc", &[f(1.5), f(2.0)]).is_err());
        assert!(call("trunc", &[s("1.5"), i(2)]).is_err());
    }

    #[test]
    fn hexadecimal_text() {
        assert_eq!(call("hex2dec", &[s("0x10")]), Ok(i(16)));
        assert_eq!(call("hex2dec", &[s("ff")]), Ok(i(255)));
        assert_eq!(call("hex2dec", &[s("-0x10")]), Ok(i(-16)));
        assert!(call("hex2dec", &[s("0xg1")]).is_err());
        assert!(call("hex2dec", &[s("0x")]).is_err());
        assert!(call("hex2dec", &[s("ffffffffffffffff")]).is_err());
        assert!(call("hex2dec", &[i(16)]).is_err());
        assert_eq!(call("dec2hex", &[i(16)]), Ok(s("0x10")));
        assert_eq!(call("dec2hex", &[i(-255)]), Ok(s("-0xff")));
        assert_eq!(
            call("dec2hex", &[i(i64::MIN)]),
            Ok(s("-0x8000000000000000"))
        );
        assert!(call("dec2hex", &[f(1.5)]).is_err());
    }

    #[test]
    fn json_text() {
        let obj = Value::object(
            [
                (std::sync::Arc::from("b"), i(1)),
                (std::sync::Arc::from("a"), s("x")),
            ]
            .into_iter()
            .collect(),
        );
        assert_eq!(
            call("to_json", std::slice::from_ref(&obj)),
            Ok(s(r#"{"a":"x","b":1}"#))
        );
        assert_eq!(call("to_json", &[f(2.5)]), Ok(s("2.5")));
        assert_eq!(call("to_json", &[Value::Null]), Ok(Value::Null));
        assert_eq!(call("parse_json", &[s(r#"{"b":1,"a":"x"}"#)]), Ok(obj));
        assert_eq!(
            call("parse_json", &[s("[1, 2.5]")]),
            Ok(Value::array(vec![i(1), f(2.5)]))
        );
        assert_eq!(call("parse_json", &[s("null")]), Ok(Value::Null));
        assert_eq!(call("parse_json", &[Value::Null]), Ok(Value::Null));
        assert!(call("parse_json", &[s("{")]).is_err());
        assert!(call("parse_json", &[i(1)]).is_err());
    }
}
