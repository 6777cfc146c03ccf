//! Mathematical functions: arithmetic, rounding, trigonometry, logarithms, bitwise operations
//! and base conversion.
//!
//! As in eKuiper, a `NULL` argument (or an empty array or object) gives `NULL`, results that
//! are not a number give `NULL`, and most functions return a `float` even for `bigint` input.

use super::args::{
    any_nil, arg, fail, float_or_null, integer, integer_trunc, number, text, wrong_type,
};
use super::{FnCtx, FnError, ScalarDef};
use crate::value::Value;

type R = Result<Value, FnError>;

const fn def(
    name: &'static str,
    min: usize,
    max: usize,
    call: super::ScalarFn,
    doc: &'static str,
) -> ScalarDef {
    ScalarDef::new("math", name, min, Some(max), call, doc)
}

#[rustfmt::skip]
pub(super) const DEFS: &[ScalarDef] = &[
    def("abs", 1, 1, abs, "abs(x): the absolute value of x, keeping its type"),
    def("acos", 1, 1, acos, "acos(x): the arc cosine of x in radians (null outside [-1, 1])"),
    def("asin", 1, 1, asin, "asin(x): the arc sine of x in radians (null outside [-1, 1])"),
    def("atan", 1, 1, atan, "atan(x): the arc tangent of x in radians"),
    def("atan2", 2, 2, atan2, "atan2(y, x): the angle in radians of the point (x, y) from the positive x axis"),
    def("bitand", 2, 2, bitand, "bitand(a, b): the bitwise AND of two integers"),
    def("bitnot", 1, 1, bitnot, "bitnot(a): the bitwise NOT of an integer"),
    def("bitor", 2, 2, bitor, "bitor(a, b): the bitwise OR of two integers"),
    def("bitxor", 2, 2, bitxor, "bitxor(a, b): the bitwise XOR of two integers"),
    def("ceil", 1, 1, ceil, "ceil(x): the smallest whole float not below x (same as ceiling)"),
    def("ceiling", 1, 1, ceiling, "ceiling(x): the smallest whole float not below x"),
    def("conv", 3, 3, conv, "conv(n, from_base, to_base): n (text or integer) rewritten from one base to another (2 to 36; a negative base means signed), null on a bad base"),
    def("cos", 1, 1, cos, "cos(x): the cosine of x radians"),
    def("cosh", 1, 1, cosh, "cosh(x): the hyperbolic cosine of x"),
    def("cot", 1, 1, cot, "cot(x): the cotangent of x radians; an error where it is infinite"),
    def("degrees", 1, 1, degrees, "degrees(x): x radians converted to degrees"),
    def("exp", 1, 1, exp, "exp(x): e raised to the power x"),
    def("floor", 1, 1, floor, "floor(x): the largest whole float not above x"),
    def("ln", 1, 1, ln, "ln(x): the natural logarithm of x (-Inf for 0, as eKuiper); an error for a negative x"),
    def("log", 1, 2, log, "log(x) or log(b, x): the base-10 logarithm of x, or its base-b logarithm (-Inf for x = 0, as eKuiper); an error when it is not a real number"),
    def("mod", 2, 2, modulo, "mod(x, y): the float remainder of x / y, with the sign of x (null when y is 0)"),
    def("pi", 0, 0, pi, "pi(): the constant π"),
    def("pow", 2, 2, pow, "pow(x, y): x raised to the power y (same as power)"),
    def("power", 2, 2, power, "power(x, y): x raised to the power y (null when not a real number)"),
    def("radians", 1, 1, radians, "radians(x): x degrees converted to radians"),
    def("rand", 0, 0, rand_fn, "rand(): a random float in [0, 1)"),
    def("round", 1, 2, round, "round(x[, digits]): x rounded half away from zero to digits decimals (default 0; negative rounds left of the point)"),
    def("sign", 1, 1, sign, "sign(x): -1, 0 or 1 as an integer, by the sign of x"),
    def("sin", 1, 1, sin, "sin(x): the sine of x radians"),
    def("sinh", 1, 1, sinh, "sinh(x): the hyperbolic sine of x"),
    def("sqrt", 1, 1, sqrt, "sqrt(x): the square root of x; an error when x < 0"),
    def("tan", 1, 1, tan, "tan(x): the tangent of x radians"),
    def("tanh", 1, 1, tanh, "tanh(x): the hyperbolic tangent of x"),
];

/// Applies a float function to the single numeric argument of `f`.
fn unary(f: &str, args: &[Value], op: fn(f64) -> f64) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    Ok(float_or_null(op(number(f, args, 0)?)))
}

fn abs(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    match arg(args, 0) {
        Value::Int(i) => Ok(i
            .checked_abs()
            .map_or(Value::Float(-(*i as f64)), Value::Int)),
        Value::Float(x) => Ok(float_or_null(x.abs())),
        _ => Err(wrong_type("abs", args, 0, "a number")),
    }
}

fn acos(_: &FnCtx<'_>, args: &[Value]) -> R {
    unary("acos", args, f64::acos)
}

fn asin(_: &FnCtx<'_>, args: &[Value]) -> R {
    unary("asin", args, f64::asin)
}

fn atan(_: &FnCtx<'_>, args: &[Value]) -> R {
    unary("atan", args, f64::atan)
}

fn atan2(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let y = number("atan2", args, 0)?;
    let x = number("atan2", args, 1)?;
    Ok(float_or_null(y.atan2(x)))
}

/// An integer operand of a bitwise function (a float without a fraction counts), else
/// eKuiper's error naming the operand (`the first operand`, `the second operand`, `operand`).
fn operand(f: &str, args: &[Value], i: usize, which: &str) -> Result<i64, FnError> {
    integer(f, args, i).map_err(|_| {
        fail(
            f,
            format!(
                "Expect int type for {which} but got {}",
                crate::wording::go_value(arg(args, i))
            ),
        )
    })
}

fn bitwise(f: &str, args: &[Value], op: fn(i64, i64) -> i64) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let a = operand(f, args, 0, "the first operand")?;
    let b = operand(f, args, 1, "the second operand")?;
    Ok(Value::Int(op(a, b)))
}

fn bitand(_: &FnCtx<'_>, args: &[Value]) -> R {
    bitwise("bitand", args, |a, b| a & b)
}

fn bitor(_: &FnCtx<'_>, args: &[Value]) -> R {
    bitwise("bitor", args, |a, b| a | b)
}

fn bitxor(_: &FnCtx<'_>, args: &[Value]) -> R {
    bitwise("bitxor", args, |a, b| a ^ b)
}

fn bitnot(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    Ok(Value::Int(!operand("bitnot", args, 0, "operand")?))
}

fn ceil(_: &FnCtx<'_>, args: &[Value]) -> R {
    unary("ceil", args, f64::ceil)
}

fn ceiling(_: &FnCtx<'_>, args: &[Value]) -> R {
    unary("ceiling", args, f64::ceil)
}

fn floor(_: &FnCtx<'_>, args: &[Value]) -> R {
    unary("floor", args, f64::floor)
}

fn cos(_: &FnCtx<'_>, args: &[Value]) -> R {
    unary("cos", args, f64::cos)
}

fn cosh(_: &FnCtx<'_>, args: &[Value]) -> R {
    unary("cosh", args, f64::cosh)
}

fn sin(_: &FnCtx<'_>, args: &[Value]) -> R {
    unary("sin", args, f64::sin)
}

fn sinh(_: &FnCtx<'_>, args: &[Value]) -> R {
    unary("sinh", args, f64::sinh)
}

fn tan(_: &FnCtx<'_>, args: &[Value]) -> R {
    unary("tan", args, f64::tan)
}

fn tanh(_: &FnCtx<'_>, args: &[Value]) -> R {
    unary("tanh", args, f64::tanh)
}

fn exp(_: &FnCtx<'_>, args: &[Value]) -> R {
    unary("exp", args, f64::exp)
}

fn degrees(_: &FnCtx<'_>, args: &[Value]) -> R {
    unary("degrees", args, f64::to_degrees)
}

fn radians(_: &FnCtx<'_>, args: &[Value]) -> R {
    unary("radians", args, f64::to_radians)
}

fn cot(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let x = number("cot", args, 0)?;
    let r = x.cos() / x.sin();
    if r.is_infinite() {
        return Err(fail(
            "cot",
            format!("out-of-range error: cot({x}) is infinite"),
        ));
    }
    Ok(float_or_null(r))
}

/// eKuiper's `%v` of a float operand, for its error texts.
fn go_float(x: f64) -> String {
    crate::wording::go_value(&Value::Float(x))
}

/// eKuiper's error for a logarithm that is not a real number.
fn not_strictly_positive(f: &str, x: f64) -> FnError {
    fail(
        f,
        format!(
            "The argument must be a strictly positive number but got {}",
            go_float(x)
        ),
    )
}

fn ln(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let x = number("ln", args, 0)?;
    // As eKuiper: ln(0) is -Inf; only a result that is not a number is an error.
    let r = x.ln();
    if r.is_nan() {
        return Err(not_strictly_positive("ln", x));
    }
    Ok(Value::Float(r))
}

fn log(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let first = number("log", args, 0)?;
    let r = if args.len() > 1 {
        number("log", args, 1)?.ln() / first.ln()
    } else {
        first.log10()
    };
    // As eKuiper: log(0) is -Inf, and the error names the first argument (the base of
    // log(b, x)).
    if r.is_nan() {
        return Err(not_strictly_positive("log", first));
    }
    Ok(Value::Float(r))
}

fn modulo(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let x = number("mod", args, 0)?;
    let y = number("mod", args, 1)?;
    Ok(float_or_null(x % y))
}

fn pi(_: &FnCtx<'_>, _: &[Value]) -> R {
    Ok(Value::Float(std::f64::consts::PI))
}

fn raise(f: &str, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let x = number(f, args, 0)?;
    let y = number(f, args, 1)?;
    Ok(float_or_null(x.powf(y)))
}

fn power(_: &FnCtx<'_>, args: &[Value]) -> R {
    raise("power", args)
}

fn pow(_: &FnCtx<'_>, args: &[Value]) -> R {
    raise("pow", args)
}

fn rand_fn(_: &FnCtx<'_>, _: &[Value]) -> R {
    Ok(Value::Float(rand::random::<f64>()))
}

/// 10 raised to `exp`, exact where a float can hold it.
pub(super) fn pow10(exp: i32) -> f64 {
    const EXACT: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    match usize::try_from(exp.unsigned_abs()) {
        Ok(i) if i < EXACT.len() && exp >= 0 => EXACT[i],
        Ok(i) if i < EXACT.len() => 1.0 / EXACT[i],
        _ => 10f64.powf(f64::from(exp)),
    }
}

/// `x` rounded half away from zero to `digits` decimal places.
pub(super) fn round_to(x: f64, digits: i64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    // Beyond ±400 digits every finite float rounds to itself (or to zero).
    let digits = digits.clamp(-400, 400) as i32;
    if digits == 0 {
        return x.round();
    }
    let factor = pow10(digits);
    let scaled = x * factor;
    if factor.is_finite() && factor != 0.0 && scaled.is_finite() {
        scaled.round() / factor
    } else if digits > 0 {
        // More decimals than the float has: nothing to round.
        x
    } else {
        // Rounding to a power of ten larger than any float.
        0.0
    }
}

fn round(_: &FnCtx<'_>, args: &[Value]) -> R {
    use crate::wording::go_typed;
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let digits = if args.len() > 1 {
        integer_trunc("round", args, 1).map_err(|_| {
            fail(
                "round",
                format!(
                    "The second argument must be an integer: cannot convert {} to int",
                    go_typed(arg(args, 1))
                ),
            )
        })?
    } else {
        0
    };
    let x = number("round", args, 0).map_err(|_| {
        fail(
            "round",
            format!("cannot convert {} to float64", go_typed(arg(args, 0))),
        )
    })?;
    Ok(float_or_null(round_to(x, digits)))
}

fn sign(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let x = number("sign", args, 0)?;
    Ok(Value::Int(if x > 0.0 {
        1
    } else if x < 0.0 {
        -1
    } else {
        0
    }))
}

fn sqrt(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let x = number("sqrt", args, 0)?;
    if x.is_nan() || x < 0.0 {
        return Err(fail(
            "sqrt",
            format!(
                "The argument must be a positive number but got {}",
                go_float(x)
            ),
        ));
    }
    Ok(Value::Float(x.sqrt()))
}

fn conv(_: &FnCtx<'_>, args: &[Value]) -> R {
    if any_nil(args) {
        return Ok(Value::Null);
    }
    let n = text("conv", args, 0)?;
    // eKuiper reads the bases leniently: anything that is not a number is an invalid base.
    let from = integer_trunc("conv", args, 1).unwrap_or(0);
    let to = integer_trunc("conv", args, 2).unwrap_or(0);
    convert_base(&n, from, to).map(|r| r.map_or(Value::Null, Value::from))
}

/// MySQL-style `CONV`: `None` when a base is out of range.
fn convert_base(input: &str, from: i64, to: i64) -> Result<Option<String>, FnError> {
    let signed = from < 0;
    let ignore_sign = to < 0;
    let (from, to) = (from.unsigned_abs(), to.unsigned_abs());
    if !(2..=36).contains(&from) || !(2..=36).contains(&to) {
        return Ok(None);
    }
    let digits = valid_prefix(input.trim(), from as u32);
    if digits.is_empty() {
        return Ok(Some("0".to_string()));
    }
    let (mut negative, digits) = match digits.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, digits),
    };
    let mut value = if digits.is_empty() {
        0
    } else {
        u64::from_str_radix(digits, from as u32)
            .map_err(|_| fail("conv", format!("{input:?} is out of the 64-bit range")))?
    };
    if signed {
        const MIN_MAGNITUDE: u64 = 1 << 63;
        if negative && value > MIN_MAGNITUDE {
            value = MIN_MAGNITUDE;
        }
        if !negative && value > i64::MAX as u64 {
            value = i64::MAX as u64;
        }
    }
    if negative {
        value = value.wrapping_neg();
    }
    negative = (value as i64) < 0;
    if ignore_sign && negative {
        value = value.wrapping_neg();
    }
    let mut out = to_radix(value, to as u32);
    if negative && ignore_sign {
        out.insert(0, '-');
    }
    Ok(Some(out))
}

/// The longest prefix of `s` that reads as a number in `base`: an optional sign, then digits.
fn valid_prefix(s: &str, base: u32) -> &str {
    let bytes = s.as_bytes();
    let mut end = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let digit = char::from(b).to_digit(36);
        match digit {
            Some(d) if d < base => end = i + 1,
            None if i == 0 && (b == b'+' || b == b'-') => {}
            _ => break,
        }
    }
    // `end` only moves past digits, so a lone sign never survives.
    let prefix = s.get(..end).unwrap_or("");
    prefix.strip_prefix('+').unwrap_or(prefix)
}

fn to_radix(mut value: u64, base: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    if value == 0 {
        return "0".to_string();
    }
    let mut out = Vec::new();
    while value > 0 {
        out.push(DIGITS[(value % u64::from(base)) as usize]);
        value /= u64::from(base);
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
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

    fn f(x: f64) -> Value {
        Value::Float(x)
    }

    fn i(x: i64) -> Value {
        Value::Int(x)
    }

    fn float_of(v: R) -> f64 {
        match v {
            Ok(Value::Float(x)) => x,
            other => panic!("expected a float, got {other:?}"),
        }
    }

    #[test]
    fn abs_keeps_type() {
        assert!(matches!(call("abs", &[i(-3)]), Ok(Value::Int(3))));
        assert!(matches!(call("abs", &[f(-2.5)]), Ok(Value::Float(x)) if x == 2.5));
        assert!(
            matches!(call("abs", &[i(i64::MIN)]), Ok(Value::Float(x)) if x == 9.223_372_036_854_776e18)
        );
        assert!(matches!(call("abs", &[Value::Null]), Ok(Value::Null)));
        assert_eq!(
            call("abs", &[Value::from("x")]).unwrap_err().0,
            "abs: expected a number, got string"
        );
    }

    #[test]
    fn inverse_trigonometry() {
        assert_eq!(float_of(call("acos", &[i(1)])), 0.0);
        assert!(matches!(call("acos", &[i(2)]), Ok(Value::Null)));
        assert!((float_of(call("asin", &[i(1)])) - std::f64::consts::FRAC_PI_2).abs() < 1e-15);
        assert!(matches!(call("asin", &[f(-1.5)]), Ok(Value::Null)));
        assert!((float_of(call("atan", &[i(1)])) - std::f64::consts::FRAC_PI_4).abs() < 1e-15);
        assert!(call("atan", &[Value::Bool(true)]).is_err());
        assert!(
            (float_of(call("atan2", &[i(1), i(1)])) - std::f64::consts::FRAC_PI_4).abs() < 1e-15
        );
        assert!(matches!(
            call("atan2", &[Value::Null, i(1)]),
            Ok(Value::Null)
        ));
        assert_eq!(
            call("atan2", &[i(1), Value::from("a")]).unwrap_err().0,
            "atan2: argument 2: expected a number, got string"
        );
    }

    #[test]
    fn bitwise_operations() {
        assert!(matches!(call("bitand", &[i(12), i(10)]), Ok(Value::Int(8))));
        assert!(matches!(
            call("bitor", &[i(12), f(10.0)]),
            Ok(Value::Int(14))
        ));
        assert!(matches!(call("bitxor", &[i(12), i(10)]), Ok(Value::Int(6))));
        assert!(matches!(call("bitnot", &[i(0)]), Ok(Value::Int(-1))));
        assert!(call("bitand", &[i(1), f(1.5)]).is_err());
        assert!(call("bitor", &[Value::from("1"), i(1)]).is_err());
        assert!(call("bitxor", &[Value::Bool(true), i(1)]).is_err());
        assert!(call("bitnot", &[f(0.5)]).is_err());
        assert!(matches!(call("bitnot", &[Value::Null]), Ok(Value::Null)));
    }

    #[test]
    fn ceil_and_floor_return_floats() {
        assert_eq!(float_of(call("ceil", &[f(1.2)])), 2.0);
        assert_eq!(float_of(call("ceiling", &[f(-1.2)])), -1.0);
        assert_eq!(float_of(call("ceil", &[i(3)])), 3.0);
        assert_eq!(float_of(call("floor", &[f(-1.2)])), -2.0);
        assert!(call("floor", &[Value::from("1")]).is_err());
        assert!(call("ceiling", &[Value::Bool(false)]).is_err());
    }

    #[test]
    fn trigonometry() {
        assert_eq!(float_of(call("cos", &[i(0)])), 1.0);
        assert!(matches!(call("cos", &[f(f64::INFINITY)]), Ok(Value::Null)));
        assert_eq!(float_of(call("cosh", &[i(0)])), 1.0);
        assert!(call("cosh", &[Value::from("0")]).is_err());
        assert_eq!(float_of(call("sin", &[i(0)])), 0.0);
        assert!(call("sin", &[Value::array(vec![i(1)])]).is_err());
        assert_eq!(float_of(call("sinh", &[i(0)])), 0.0);
        assert!(call("sinh", &[Value::Bool(true)]).is_err());
        assert!((float_of(call("tan", &[f(std::f64::consts::FRAC_PI_4)])) - 1.0).abs() < 1e-15);
        assert!(call("tan", &[Value::from("")]).is_err());
        assert_eq!(float_of(call("tanh", &[i(0)])), 0.0);
        assert!(matches!(call("tanh", &[Value::Null]), Ok(Value::Null)));
        assert!((float_of(call("cot", &[f(std::f64::consts::FRAC_PI_4)])) - 1.0).abs() < 1e-15);
        assert!(call("cot", &[i(0)]).is_err());
    }

    #[test]
    fn angle_conversion() {
        assert_eq!(float_of(call("degrees", &[f(std::f64::consts::PI)])), 180.0);
        assert!(call("degrees", &[Value::from("pi")]).is_err());
        assert_eq!(float_of(call("radians", &[i(180)])), std::f64::consts::PI);
        assert!(matches!(call("radians", &[Value::Null]), Ok(Value::Null)));
    }

    #[test]
    fn exponentials_and_logarithms() {
        assert_eq!(float_of(call("exp", &[i(0)])), 1.0);
        assert_eq!(float_of(call("exp", &[f(1000.0)])), f64::INFINITY);
        assert!((float_of(call("ln", &[f(std::f64::consts::E)])) - 1.0).abs() < 1e-15);
        assert_eq!(float_of(call("ln", &[i(0)])), f64::NEG_INFINITY);
        assert!(call("ln", &[i(-1)]).is_err());
        assert_eq!(float_of(call("log", &[i(100)])), 2.0);
        assert_eq!(float_of(call("log", &[i(2), i(8)])), 3.0);
        assert_eq!(float_of(call("log", &[i(0)])), f64::NEG_INFINITY);
        assert_eq!(
            call("ln", &[f(-10.5)]).unwrap_err().0,
            "ln: The argument must be a strictly positive number but got -10.5"
        );
        assert!(call("log", &[i(-2), i(8)]).is_err());
        assert!(matches!(call("log", &[i(2), Value::Null]), Ok(Value::Null)));
    }

    #[test]
    fn modulo_power_and_constants() {
        assert_eq!(float_of(call("mod", &[i(7), i(3)])), 1.0);
        assert_eq!(float_of(call("mod", &[f(-7.5), i(2)])), -1.5);
        assert!(matches!(call("mod", &[i(1), i(0)]), Ok(Value::Null)));
        assert_eq!(float_of(call("power", &[i(2), i(10)])), 1024.0);
        assert_eq!(float_of(call("pow", &[i(4), f(0.5)])), 2.0);
        assert!(matches!(call("pow", &[i(-8), f(0.5)]), Ok(Value::Null)));
        assert!(call("power", &[Value::from("2"), i(2)]).is_err());
        assert_eq!(float_of(call("pi", &[])), 4.0 * 1f64.atan());
        // Extra arguments (refused by the arity check) are ignored rather than fatal.
        assert_eq!(float_of(call("pi", &[i(1)])), std::f64::consts::PI);
        let draws: Vec<f64> = (0..16).map(|_| float_of(call("rand", &[]))).collect();
        assert!(draws.iter().all(|r| (0.0..1.0).contains(r)));
        assert!(draws.iter().any(|&r| r != draws[0]));
    }

    #[test]
    fn round_half_away_from_zero() {
        assert_eq!(float_of(call("round", &[f(42.4)])), 42.0);
        assert_eq!(float_of(call("round", &[f(42.4382), i(2)])), 42.44);
        assert_eq!(float_of(call("round", &[f(-2.5)])), -3.0);
        assert_eq!(float_of(call("round", &[f(1234.5), i(-2)])), 1200.0);
        assert_eq!(float_of(call("round", &[f(1.5), i(1000)])), 1.5);
        assert_eq!(float_of(call("round", &[f(1e300), i(-1000)])), 0.0);
        assert_eq!(float_of(call("round", &[f(1e300), i(20)])), 1e300);
        assert!(call("round", &[f(1.0), Value::from("2")]).is_err());
        assert!(matches!(
            call("round", &[Value::Null, i(2)]),
            Ok(Value::Null)
        ));
    }

    #[test]
    fn sign_and_sqrt() {
        assert!(matches!(call("sign", &[f(-0.1)]), Ok(Value::Int(-1))));
        assert!(matches!(call("sign", &[i(0)]), Ok(Value::Int(0))));
        assert!(matches!(call("sign", &[i(9)]), Ok(Value::Int(1))));
        assert!(call("sign", &[Value::from("-1")]).is_err());
        assert_eq!(float_of(call("sqrt", &[i(16)])), 4.0);
        assert!(call("sqrt", &[i(-1)]).is_err());
    }

    #[test]
    fn conv_between_bases() {
        let s = |v: R| v.unwrap().to_text();
        assert_eq!(s(call("conv", &[Value::from("a"), i(16), i(2)])), "1010");
        assert_eq!(s(call("conv", &[Value::from("6E"), i(18), i(8)])), "172");
        assert_eq!(s(call("conv", &[i(-17), i(10), i(-18)])), "-H");
        assert_eq!(s(call("conv", &[i(-17), i(10), i(18)])), "2D3FGB0B9CG4BD1H");
        assert_eq!(s(call("conv", &[Value::from(" 12xyz"), i(10), i(16)])), "C");
        assert_eq!(s(call("conv", &[Value::from("+ff"), i(16), i(10)])), "255");
        assert_eq!(s(call("conv", &[Value::from("zz"), i(10), i(10)])), "0");
        assert!(matches!(
            call("conv", &[i(1), i(1), i(10)]),
            Ok(Value::Null)
        ));
        assert!(matches!(
            call("conv", &[i(1), i(10), i(37)]),
            Ok(Value::Null)
        ));
        assert!(
            call(
                "conv",
                &[Value::from("99999999999999999999999"), i(10), i(16)]
            )
            .is_err()
        );
        assert!(call("conv", &[Value::array(vec![i(1)]), i(10), i(16)]).is_err());
    }
}
