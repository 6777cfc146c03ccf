//! Argument helpers shared by the scalar functions: typed extraction with uniform error messages
//! and eKuiper's "skip on null" checks.

use std::borrow::Cow;
use std::fmt::Display;

use super::FnError;
use crate::value::Value;

static NULL: Value = Value::Null;

/// The largest string, in bytes, a function may build (padding, repetition).
pub(super) const MAX_STRING_BYTES: usize = 16 << 20;

/// The largest array a function may build (`repeat`, `sequence`).
pub(super) const MAX_ARRAY_LEN: usize = 1 << 20;

/// Argument `i`, or `NULL` when the caller passed fewer (arity is checked before the call, so
/// this only keeps a misuse from panicking).
pub(super) fn arg(args: &[Value], i: usize) -> &Value {
    args.get(i).unwrap_or(&NULL)
}

/// What eKuiper treats as "nil" before calling most functions: `NULL`, or an empty array or
/// object.
pub(super) fn nil_like(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

/// True when any argument is [`nil_like`].
pub(super) fn any_nil(args: &[Value]) -> bool {
    args.iter().any(nil_like)
}

fn position(args: &[Value], i: usize) -> String {
    if args.len() > 1 {
        format!("argument {}: ", i + 1)
    } else {
        String::new()
    }
}

/// `"f: expected <what>, got <type>"`, naming the argument when there are several.
pub(super) fn wrong_type(f: &str, args: &[Value], i: usize, expected: &str) -> FnError {
    FnError(format!(
        "{f}: {}expected {expected}, got {}",
        position(args, i),
        arg(args, i).type_name()
    ))
}

/// `"f: <message>"`, naming the argument when there are several.
pub(super) fn bad_arg(f: &str, args: &[Value], i: usize, message: impl Display) -> FnError {
    FnError(format!("{f}: {}{message}", position(args, i)))
}

/// `"f: <message>"`.
pub(super) fn fail(f: &str, message: impl Display) -> FnError {
    FnError(format!("{f}: {message}"))
}

/// A float truncated toward zero, when it is finite and fits an `i64`.
pub(super) fn f64_to_i64(f: f64) -> Option<i64> {
    // 2^63 is exact in f64; every finite float in [-2^63, 2^63) truncates into range.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (f.is_finite() && (-LIMIT..LIMIT).contains(&f)).then(|| f.trunc() as i64)
}

/// A numeric argument as a float.
pub(super) fn number(f: &str, args: &[Value], i: usize) -> Result<f64, FnError> {
    arg(args, i)
        .as_f64()
        .ok_or_else(|| wrong_type(f, args, i, "a number"))
}

/// An integer argument: a `bigint`, or a `float` with no fractional part.
pub(super) fn integer(f: &str, args: &[Value], i: usize) -> Result<i64, FnError> {
    match arg(args, i) {
        Value::Int(n) => Ok(*n),
        Value::Float(x) if x.fract() == 0.0 => {
            f64_to_i64(*x).ok_or_else(|| bad_arg(f, args, i, format!("{x} is out of range")))
        }
        _ => Err(wrong_type(f, args, i, "an integer")),
    }
}

/// A numeric argument as an integer, truncating a `float` toward zero.
pub(super) fn integer_trunc(f: &str, args: &[Value], i: usize) -> Result<i64, FnError> {
    match arg(args, i) {
        Value::Int(n) => Ok(*n),
        Value::Float(x) => {
            f64_to_i64(*x).ok_or_else(|| bad_arg(f, args, i, format!("{x} is out of range")))
        }
        _ => Err(wrong_type(f, args, i, "a number")),
    }
}

/// A `string` argument, no conversion.
pub(super) fn string<'a>(f: &str, args: &'a [Value], i: usize) -> Result<&'a str, FnError> {
    arg(args, i)
        .as_str()
        .ok_or_else(|| wrong_type(f, args, i, "a string"))
}

/// An argument read as text: strings as they are, numbers and booleans in their SQL text form,
/// UTF-8 bytes as text, `NULL` as the empty string. Arrays and objects are refused.
pub(super) fn text<'a>(f: &str, args: &'a [Value], i: usize) -> Result<Cow<'a, str>, FnError> {
    match arg(args, i) {
        Value::String(s) => Ok(Cow::Borrowed(s)),
        Value::Null => Ok(Cow::Borrowed("")),
        Value::Bytes(b) => std::str::from_utf8(b)
            .map(Cow::Borrowed)
            .map_err(|_| bad_arg(f, args, i, "bytes are not valid UTF-8 text")),
        v @ (Value::Int(_) | Value::Float(_) | Value::Bool(_)) => Ok(Cow::Owned(v.to_text())),
        Value::Array(_) | Value::Object(_) => Err(wrong_type(f, args, i, "a string")),
    }
}

/// An argument read as raw bytes: `bytea` as is, anything [`text`] accepts as its UTF-8.
pub(super) fn bytes<'a>(f: &str, args: &'a [Value], i: usize) -> Result<Cow<'a, [u8]>, FnError> {
    match arg(args, i) {
        Value::Bytes(b) => Ok(Cow::Borrowed(b)),
        _ => Ok(match text(f, args, i)? {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        }),
    }
}

/// A float result; NaN (which JSON cannot hold) becomes `NULL`, as eKuiper does for most math.
pub(super) fn float_or_null(x: f64) -> Value {
    if x.is_nan() {
        Value::Null
    } else {
        Value::Float(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nil_like_covers_empty_containers() {
        assert!(nil_like(&Value::Null));
        assert!(nil_like(&Value::array(vec![])));
        assert!(!nil_like(&Value::array(vec![Value::Null])));
        assert!(!nil_like(&Value::from("")));
    }

    #[test]
    fn float_to_int_guards_range() {
        assert_eq!(f64_to_i64(-3.9), Some(-3));
        assert_eq!(f64_to_i64(9.3e18), None);
        assert_eq!(f64_to_i64(-9_223_372_036_854_775_808.0), Some(i64::MIN));
        assert_eq!(f64_to_i64(f64::NAN), None);
    }

    #[test]
    fn extraction_errors_name_function_and_argument() {
        let one = [Value::from("x")];
        assert_eq!(
            number("abs", &one, 0).unwrap_err().0,
            "abs: expected a number, got string"
        );
        let two = [Value::Int(1), Value::Bool(true)];
        assert_eq!(
            integer("bitand", &two, 1).unwrap_err().0,
            "bitand: argument 2: expected an integer, got boolean"
        );
        assert_eq!(integer("f", &[Value::Float(4.0)], 0), Ok(4));
        assert!(integer("f", &[Value::Float(4.5)], 0).is_err());
        assert_eq!(integer_trunc("f", &[Value::Float(-4.5)], 0), Ok(-4));
    }

    #[test]
    fn text_reads_scalars_and_refuses_containers() {
        assert_eq!(text("f", &[Value::Int(12)], 0).unwrap(), "12");
        assert_eq!(text("f", &[Value::Float(1.5)], 0).unwrap(), "1.5");
        assert_eq!(text("f", &[Value::Null], 0).unwrap(), "");
        let bad = [Value::Bytes(Arc::from(&[0xffu8][..]))];
        assert!(text("f", &bad, 0).is_err());
        assert!(text("f", &[Value::array(vec![])], 0).is_err());
        assert_eq!(arg(&[], 3), &Value::Null);
    }

    use std::sync::Arc;
}
