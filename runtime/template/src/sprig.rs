//! The sprig functions eKuiper users write in data templates, reimplemented over Oort values
//! with sprig's behaviour (including its argument order made for pipelines, such as
//! `"$x" | trimAll "$"`).

use std::sync::Arc;

use oort_value::base64;

use super::exec::Val;
use super::format;
use super::funcs::*;
use crate::json;
use crate::value::{Map, Value};

// ---------------------------------------------------------------------------------------------
// Strings

pub(super) fn hello<'a>(_: &[Val<'a>]) -> FR<'a> {
    string("Hello!")
}

pub(super) fn upper<'a>(a: &[Val<'a>]) -> FR<'a> {
    string(map_runes(s(a, 0), true))
}

pub(super) fn lower<'a>(a: &[Val<'a>]) -> FR<'a> {
    string(map_runes(s(a, 0), false))
}

/// Go's `strings.Title` word boundaries.
fn is_separator(c: char) -> bool {
    if c.is_ascii() {
        return !(c.is_ascii_alphanumeric() || c == '_');
    }
    if c.is_alphabetic() || c.is_numeric() {
        return false;
    }
    c.is_whitespace()
}

/// Go's `unicode.ToTitle`: upper case, except for the four digraphs with a title case.
fn title_rune(c: char) -> char {
    match c {
        '\u{1C4}'..='\u{1C6}' => '\u{1C5}',
        '\u{1C7}'..='\u{1C9}' => '\u{1C8}',
        '\u{1CA}'..='\u{1CC}' => '\u{1CB}',
        '\u{1F1}'..='\u{1F3}' => '\u{1F2}',
        c => upper_rune(c),
    }
}

pub(super) fn title<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut prev = ' ';
    let out: String = s(a, 0)
        .chars()
        .map(|c| {
            let mapped = if is_separator(prev) { title_rune(c) } else { c };
            prev = c;
            mapped
        })
        .collect();
    string(out)
}

pub(super) fn untitle<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut at_word_start = true;
    let out: String = s(a, 0)
        .chars()
        .map(|c| {
            let mapped = if at_word_start { lower_rune(c) } else { c };
            at_word_start = c.is_whitespace();
            mapped
        })
        .collect();
    string(out)
}

pub(super) fn trim<'a>(a: &[Val<'a>]) -> FR<'a> {
    string(s(a, 0).trim())
}

pub(super) fn trim_all<'a>(a: &[Val<'a>]) -> FR<'a> {
    let cutset = s(a, 0);
    string(s(a, 1).trim_matches(|c| cutset.contains(c)))
}

pub(super) fn trim_prefix<'a>(a: &[Val<'a>]) -> FR<'a> {
    let (prefix, text) = (s(a, 0), s(a, 1));
    string(text.strip_prefix(prefix).unwrap_or(text))
}

pub(super) fn trim_suffix<'a>(a: &[Val<'a>]) -> FR<'a> {
    let (suffix, text) = (s(a, 0), s(a, 1));
    string(text.strip_suffix(suffix).unwrap_or(text))
}

pub(super) fn nospace<'a>(a: &[Val<'a>]) -> FR<'a> {
    string(
        s(a, 0)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>(),
    )
}

pub(super) fn initials<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut out = String::new();
    let mut at_word_start = true;
    for c in s(a, 0).chars() {
        if c.is_whitespace() {
            at_word_start = true;
        } else if at_word_start {
            out.push(c);
            at_word_start = false;
        }
    }
    string(out)
}

/// `s[start:end]` on bytes, with Go's panic text when out of range.
fn byte_slice(s: &str, start: i64, end: i64, show_start: bool) -> Result<String, String> {
    let len = s.len() as i64;
    if start < 0 || end > len || start > end {
        return Err(if end > len {
            let from = if show_start {
                start.to_string()
            } else {
                String::new()
            };
            format!("runtime error: slice bounds out of range [{from}:{end}] with length {len}")
        } else {
            format!("runtime error: slice bounds out of range [{start}:{end}]")
        });
    }
    Ok(String::from_utf8_lossy(&s.as_bytes()[start as usize..end as usize]).into_owned())
}

pub(super) fn substr<'a>(a: &[Val<'a>]) -> FR<'a> {
    let (start, end, text) = (n(a, 0), n(a, 1), s(a, 2));
    let len = text.len() as i64;
    let out = if start < 0 {
        byte_slice(text, 0, end, false)?
    } else if end < 0 || end > len {
        byte_slice(text, start, len, true)?
    } else {
        byte_slice(text, start, end, true)?
    };
    string(out)
}

pub(super) fn trunc<'a>(a: &[Val<'a>]) -> FR<'a> {
    let (c, text) = (n(a, 0), s(a, 1));
    let len = text.len() as i64;
    if c < 0 && len + c > 0 {
        return string(byte_slice(text, len + c, len, true)?);
    }
    if c >= 0 && len > c {
        return string(byte_slice(text, 0, c, true)?);
    }
    string(text)
}

pub(super) fn abbrev<'a>(a: &[Val<'a>]) -> FR<'a> {
    let (width, text) = (n(a, 0), s(a, 1));
    if width < 4 || text.len() as i64 <= width {
        return Ok(a[1].clone());
    }
    string(format!("{}...", byte_slice(text, 0, width - 3, true)?))
}

pub(super) fn repeat<'a>(a: &[Val<'a>]) -> FR<'a> {
    let (count, text) = (n(a, 0), s(a, 1));
    let Ok(count) = usize::try_from(count) else {
        return Err("strings: negative Repeat count".to_owned());
    };
    check_size(count.saturating_mul(text.len()))?;
    string(text.repeat(count))
}

pub(super) fn contains<'a>(a: &[Val<'a>]) -> FR<'a> {
    boolean(s(a, 1).contains(s(a, 0)))
}

pub(super) fn has_prefix<'a>(a: &[Val<'a>]) -> FR<'a> {
    boolean(s(a, 1).starts_with(s(a, 0)))
}

pub(super) fn has_suffix<'a>(a: &[Val<'a>]) -> FR<'a> {
    boolean(s(a, 1).ends_with(s(a, 0)))
}

pub(super) fn quote<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut out = Vec::new();
    for v in values_of(a).filter(|v| !v.is_null()) {
        if !out.is_empty() {
            out.push(b' ');
        }
        format::quote_str(&mut out, &strval(v), false);
    }
    bytes_to_string(out)
}

pub(super) fn squote<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut out = Vec::new();
    for v in values_of(a).filter(|v| !v.is_null()) {
        if !out.is_empty() {
            out.push(b' ');
        }
        out.push(b'\'');
        format::write_v(&mut out, v);
        out.push(b'\'');
    }
    bytes_to_string(out)
}

pub(super) fn cat<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut out = Vec::new();
    for v in values_of(a).filter(|v| !v.is_null()) {
        if !out.is_empty() {
            out.push(b' ');
        }
        format::write_v(&mut out, v);
    }
    bytes_to_string(out)
}

fn indent_text(spaces: i64, text: &str) -> Result<String, String> {
    let Ok(spaces) = usize::try_from(spaces) else {
        return Err("strings: negative Repeat count".to_owned());
    };
    let lines = text.matches('\n').count() + 1;
    check_size(spaces.saturating_mul(lines).saturating_add(text.len()))?;
    let pad = " ".repeat(spaces);
    Ok(format!("{pad}{}", text.replace('\n', &format!("\n{pad}"))))
}

pub(super) fn indent<'a>(a: &[Val<'a>]) -> FR<'a> {
    string(indent_text(n(a, 0), s(a, 1))?)
}

pub(super) fn nindent<'a>(a: &[Val<'a>]) -> FR<'a> {
    string(format!("\n{}", indent_text(n(a, 0), s(a, 1))?))
}

pub(super) fn replace<'a>(a: &[Val<'a>]) -> FR<'a> {
    let (old, new, text) = (s(a, 0), s(a, 1), s(a, 2));
    if old.is_empty() {
        check_size(
            (text.chars().count() + 1)
                .saturating_mul(new.len())
                .saturating_add(text.len()),
        )?;
    } else if new.len() > old.len() {
        let count = text.matches(old).count();
        check_size(
            count
                .saturating_mul(new.len() - old.len())
                .saturating_add(text.len()),
        )?;
    }
    string(text.replace(old, new))
}

pub(super) fn plural<'a>(a: &[Val<'a>]) -> FR<'a> {
    Ok(if n(a, 2) == 1 {
        a[0].clone()
    } else {
        a[1].clone()
    })
}

pub(super) fn to_string_w(a: &[Val<'_>], out: &mut Vec<u8>) -> Result<(), String> {
    format::write_v(out, a[0].value());
    Ok(())
}

pub(super) fn to_string<'a>(a: &[Val<'a>]) -> FR<'a> {
    match a[0].value() {
        Value::String(_) => Ok(a[0].clone()),
        other => string(strval(other)),
    }
}

pub(super) fn atoi<'a>(a: &[Val<'a>]) -> FR<'a> {
    let text = s(a, 0);
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    let ok = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    int_result(if ok { text.parse().unwrap_or(0) } else { 0 })
}

pub(super) fn int<'a>(a: &[Val<'a>]) -> FR<'a> {
    int_result(to_int64(a[0].value()))
}

pub(super) fn float64<'a>(a: &[Val<'a>]) -> FR<'a> {
    float_result(to_float64(a[0].value()))
}

pub(super) fn to_decimal<'a>(a: &[Val<'a>]) -> FR<'a> {
    let text = format::to_v_string(a[0].value());
    let digits = text.strip_prefix(['+', '-']).unwrap_or(&text);
    let valid = !digits.is_empty() && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
    let v = if valid {
        i64::from_str_radix(&text, 8).unwrap_or(0)
    } else {
        0
    };
    int_result(v)
}

/// Go's `strings.SplitN`; `n < 0` means no limit.
fn go_split<'x>(text: &'x str, sep: &str, n: i64) -> Vec<&'x str> {
    if n == 0 {
        return Vec::new();
    }
    let limit = usize::try_from(n).unwrap_or(usize::MAX);
    if sep.is_empty() {
        // Split into characters, the last part taking the rest.
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if parts.len() + 1 == limit {
                parts.push(rest);
                return parts;
            }
            let c = rest.chars().next().map_or(1, char::len_utf8);
            parts.push(&rest[..c]);
            rest = &rest[c..];
        }
        return parts;
    }
    text.splitn(limit, sep).collect()
}

fn indexed_map<'a>(parts: Vec<&str>) -> FR<'a> {
    let map: Map = parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| (Arc::from(format!("_{i}")), Value::string(p)))
        .collect();
    own(Value::object(map))
}

pub(super) fn split<'a>(a: &[Val<'a>]) -> FR<'a> {
    indexed_map(go_split(s(a, 1), s(a, 0), -1))
}

pub(super) fn splitn<'a>(a: &[Val<'a>]) -> FR<'a> {
    indexed_map(go_split(s(a, 2), s(a, 0), n(a, 1)))
}

pub(super) fn split_list<'a>(a: &[Val<'a>]) -> FR<'a> {
    list_result(
        go_split(s(a, 1), s(a, 0), -1)
            .into_iter()
            .map(Value::string)
            .collect(),
    )
}

pub(super) fn to_strings<'a>(a: &[Val<'a>]) -> FR<'a> {
    list_result(
        strslice(a[0].value())
            .into_iter()
            .map(|x| Value::string(&*x))
            .collect(),
    )
}

pub(super) fn join<'a>(a: &[Val<'a>]) -> FR<'a> {
    string(strslice(a[1].value()).join(s(a, 0)))
}

pub(super) fn sort_alpha<'a>(a: &[Val<'a>]) -> FR<'a> {
    let v = a[0].value();
    let mut items = match v {
        Value::Array(_) | Value::Bytes(_) => strslice(v),
        other => vec![strval(other)],
    };
    items.sort();
    list_result(items.into_iter().map(|x| Value::string(&*x)).collect())
}

// ---------------------------------------------------------------------------------------------
// Numbers

fn until_step_list(start: i64, stop: i64, step: i64) -> Result<Vec<i64>, String> {
    let mut out = Vec::new();
    let count = if stop < start {
        if step >= 0 {
            return Ok(out);
        }
        (i128::from(start) - i128::from(stop)) / -i128::from(step)
    } else {
        if step <= 0 {
            return Ok(out);
        }
        (i128::from(stop) - i128::from(start)) / i128::from(step)
    };
    check_size(usize::try_from(count).unwrap_or(usize::MAX))?;
    let mut i = start;
    while (stop < start && i > stop) || (stop >= start && i < stop) {
        out.push(i);
        match i.checked_add(step) {
            Some(next) => i = next,
            None => break,
        }
    }
    Ok(out)
}

fn ints<'a>(items: Vec<i64>) -> FR<'a> {
    list_result(items.into_iter().map(Value::Int).collect())
}

pub(super) fn until<'a>(a: &[Val<'a>]) -> FR<'a> {
    let count = n(a, 0);
    ints(until_step_list(0, count, if count < 0 { -1 } else { 1 })?)
}

pub(super) fn until_step<'a>(a: &[Val<'a>]) -> FR<'a> {
    ints(until_step_list(n(a, 0), n(a, 1), n(a, 2))?)
}

pub(super) fn seq<'a>(a: &[Val<'a>]) -> FR<'a> {
    let p: Vec<i64> = (0..a.len()).map(|i| n(a, i)).collect();
    let items = match p.as_slice() {
        [end] => {
            let inc = if *end < 1 { -1 } else { 1 };
            until_step_list(1, end.saturating_add(inc), inc)?
        }
        [start, end] => {
            let step = if end < start { -1 } else { 1 };
            until_step_list(*start, end.saturating_add(step), step)?
        }
        [start, step, end] => {
            let mut inc = 1;
            if end < start {
                inc = -1;
                if *step > 0 {
                    return string("");
                }
            }
            until_step_list(*start, end.saturating_add(inc), *step)?
        }
        _ => Vec::new(),
    };
    let text: Vec<String> = items.iter().map(i64::to_string).collect();
    string(text.join(" "))
}

pub(super) fn add1<'a>(a: &[Val<'a>]) -> FR<'a> {
    int_result(to_int64(a[0].value()).wrapping_add(1))
}

pub(super) fn add<'a>(a: &[Val<'a>]) -> FR<'a> {
    int_result(values_of(a).map(to_int64).fold(0i64, i64::wrapping_add))
}

pub(super) fn sub<'a>(a: &[Val<'a>]) -> FR<'a> {
    int_result(to_int64(a[0].value()).wrapping_sub(to_int64(a[1].value())))
}

pub(super) fn mul<'a>(a: &[Val<'a>]) -> FR<'a> {
    int_result(values_of(a).map(to_int64).fold(1i64, i64::wrapping_mul))
}

pub(super) fn div<'a>(a: &[Val<'a>]) -> FR<'a> {
    let d = to_int64(a[1].value());
    if d == 0 {
        return Err("runtime error: integer divide by zero".to_owned());
    }
    int_result(to_int64(a[0].value()).wrapping_div(d))
}

pub(super) fn modulo<'a>(a: &[Val<'a>]) -> FR<'a> {
    let d = to_int64(a[1].value());
    if d == 0 {
        return Err("runtime error: integer divide by zero".to_owned());
    }
    int_result(to_int64(a[0].value()).wrapping_rem(d))
}

pub(super) fn max<'a>(a: &[Val<'a>]) -> FR<'a> {
    int_result(values_of(a).map(to_int64).max().unwrap_or(0))
}

pub(super) fn min<'a>(a: &[Val<'a>]) -> FR<'a> {
    int_result(values_of(a).map(to_int64).min().unwrap_or(0))
}

/// An exact decimal `m × 10^e`, as sprig's float functions compute with.
#[derive(Clone, Copy)]
struct Dec {
    m: i128,
    e: i32,
}

impl Dec {
    /// The shortest decimal that reads back as `f` (what `decimal.NewFromFloat` takes).
    fn of(f: f64) -> Result<Self, String> {
        if !f.is_finite() {
            return Err(format!(
                "Cannot create a Decimal from {}",
                format::to_v_string(&Value::Float(f))
            ));
        }
        let mut buf = ryu::Buffer::new();
        let text = buf.format_finite(f);
        let (mantissa, exp) = match text.split_once('e') {
            Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
            None => (text, 0),
        };
        let (int_part, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = format!("{int_part}{frac}");
        let m = digits.parse::<i128>().unwrap_or(0);
        Ok(Self {
            m,
            e: exp - i32::try_from(frac.len()).unwrap_or(0),
        })
    }

    fn pow10(k: i32) -> Option<i128> {
        10i128.checked_pow(u32::try_from(k).ok()?)
    }

    fn align(self, other: Self) -> Option<(i128, i128, i32)> {
        let e = self.e.min(other.e);
        let a = self.m.checked_mul(Self::pow10(self.e - e)?)?;
        let b = other.m.checked_mul(Self::pow10(other.e - e)?)?;
        Some((a, b, e))
    }

    fn add(self, other: Self) -> Option<Self> {
        let (a, b, e) = self.align(other)?;
        Some(Self {
            m: a.checked_add(b)?,
            e,
        })
    }

    fn sub(self, other: Self) -> Option<Self> {
        let (a, b, e) = self.align(other)?;
        Some(Self {
            m: a.checked_sub(b)?,
            e,
        })
    }

    fn mul(self, other: Self) -> Option<Self> {
        Some(Self {
            m: self.m.checked_mul(other.m)?,
            e: self.e.checked_add(other.e)?,
        })
    }

    /// Division rounded half away from zero to 16 decimal places, as `decimal.Div` does.
    fn div(self, other: Self) -> Option<Self> {
        const PLACES: i32 = 16;
        let shift = self.e - other.e + PLACES;
        let (num, den) = if shift >= 0 {
            (self.m.checked_mul(Self::pow10(shift)?)?, other.m)
        } else {
            (self.m, other.m.checked_mul(Self::pow10(-shift)?)?)
        };
        let q = num / den;
        let r = num % den;
        let round_away = r.checked_abs()?.checked_mul(2)? >= den.checked_abs()?;
        let q = if round_away && r != 0 {
            if (num < 0) == (den < 0) { q + 1 } else { q - 1 }
        } else {
            q
        };
        Some(Self { m: q, e: -PLACES })
    }

    fn to_f64(self) -> f64 {
        format!("{}e{}", self.m, self.e).parse().unwrap_or(f64::NAN)
    }
}

/// Folds `rest` into `first` with decimal arithmetic, falling back to floats on overflow.
fn decimal_fold(
    first: f64,
    rest: impl Iterator<Item = f64>,
    op: fn(Dec, Dec) -> Option<Dec>,
    float_op: fn(f64, f64) -> f64,
) -> Result<f64, String> {
    let mut acc = Dec::of(first)?;
    let mut exact = true;
    let mut acc_f = first;
    for x in rest {
        let d = Dec::of(x)?;
        if exact {
            match op(acc, d) {
                Some(next) => acc = next,
                None => {
                    exact = false;
                    acc_f = float_op(acc.to_f64(), x);
                }
            }
        } else {
            acc_f = float_op(acc_f, x);
        }
    }
    Ok(if exact { acc.to_f64() } else { acc_f })
}

pub(super) fn add1f<'a>(a: &[Val<'a>]) -> FR<'a> {
    let x = to_float64(a[0].value());
    float_result(decimal_fold(x, std::iter::once(1.0), Dec::add, |p, q| {
        p + q
    })?)
}

pub(super) fn addf<'a>(a: &[Val<'a>]) -> FR<'a> {
    let items = values_of(a).map(to_float64);
    float_result(decimal_fold(0.0, items, Dec::add, |p, q| p + q)?)
}

pub(super) fn subf<'a>(a: &[Val<'a>]) -> FR<'a> {
    let first = to_float64(a[0].value());
    let rest = values_of(&a[1..]).map(to_float64);
    float_result(decimal_fold(first, rest, Dec::sub, |p, q| p - q)?)
}

pub(super) fn mulf<'a>(a: &[Val<'a>]) -> FR<'a> {
    let first = to_float64(a[0].value());
    let rest = values_of(&a[1..]).map(to_float64);
    float_result(decimal_fold(first, rest, Dec::mul, |p, q| p * q)?)
}

pub(super) fn divf<'a>(a: &[Val<'a>]) -> FR<'a> {
    let first = to_float64(a[0].value());
    if values_of(&a[1..]).any(|v| to_float64(v) == 0.0) {
        return Err("decimal division by 0".to_owned());
    }
    let rest = values_of(&a[1..]).map(to_float64);
    float_result(decimal_fold(first, rest, Dec::div, |p, q| p / q)?)
}

/// Go's `math.Max`.
fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        return f64::INFINITY;
    }
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 && y == 0.0 {
        return if x.is_sign_negative() { y } else { x };
    }
    if x > y { x } else { y }
}

/// Go's `math.Min`.
fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if x == 0.0 && y == 0.0 {
        return if x.is_sign_negative() { x } else { y };
    }
    if x < y { x } else { y }
}

pub(super) fn maxf<'a>(a: &[Val<'a>]) -> FR<'a> {
    let first = to_float64(a[0].value());
    float_result(values_of(&a[1..]).map(to_float64).fold(first, go_max))
}

pub(super) fn minf<'a>(a: &[Val<'a>]) -> FR<'a> {
    let first = to_float64(a[0].value());
    float_result(values_of(&a[1..]).map(to_float64).fold(first, go_min))
}

pub(super) fn floor<'a>(a: &[Val<'a>]) -> FR<'a> {
    float_result(to_float64(a[0].value()).floor())
}

pub(super) fn ceil<'a>(a: &[Val<'a>]) -> FR<'a> {
    float_result(to_float64(a[0].value()).ceil())
}

pub(super) fn round<'a>(a: &[Val<'a>]) -> FR<'a> {
    let round_on = a.get(2).map_or(0.5, |v| to_float64(v.value()));
    let val = to_float64(a[0].value());
    let pow = 10f64.powf(n(a, 1) as f64);
    let digit = pow * val;
    let frac = digit.fract();
    let rounded = if frac >= round_on {
        digit.ceil()
    } else {
        digit.floor()
    };
    float_result(rounded / pow)
}

// ---------------------------------------------------------------------------------------------
// Defaults, JSON, types

pub(super) fn default<'a>(a: &[Val<'a>]) -> FR<'a> {
    match a.get(1) {
        Some(given) if truth(given.value()) => Ok(given.clone()),
        _ => Ok(a[0].clone()),
    }
}

pub(super) fn empty<'a>(a: &[Val<'a>]) -> FR<'a> {
    boolean(!truth(a[0].value()))
}

pub(super) fn coalesce<'a>(a: &[Val<'a>]) -> FR<'a> {
    Ok(a.iter()
        .find(|v| truth(v.value()))
        .cloned()
        .unwrap_or(Val::Missing))
}

pub(super) fn all<'a>(a: &[Val<'a>]) -> FR<'a> {
    boolean(values_of(a).all(truth))
}

pub(super) fn any<'a>(a: &[Val<'a>]) -> FR<'a> {
    boolean(values_of(a).any(truth))
}

pub(super) fn compact<'a>(a: &[Val<'a>]) -> FR<'a> {
    let items = list_items(a[0].value(), "compact")?;
    list_result(items.iter().filter(|v| truth(v)).cloned().collect())
}

pub(super) fn ternary<'a>(a: &[Val<'a>]) -> FR<'a> {
    Ok(if a[2].value().is_true() {
        a[0].clone()
    } else {
        a[1].clone()
    })
}

/// JSON numbers decode as float64 in Go.
fn floats_only(v: Value) -> Value {
    match v {
        Value::Int(i) => Value::Float(i as f64),
        Value::Array(items) => Value::array(
            Arc::unwrap_or_clone(items)
                .into_iter()
                .map(floats_only)
                .collect(),
        ),
        Value::Object(map) => Value::object(
            Arc::unwrap_or_clone(map)
                .into_iter()
                .map(|(k, v)| (k, floats_only(v)))
                .collect(),
        ),
        other => other,
    }
}

pub(super) fn from_json<'a>(a: &[Val<'a>]) -> FR<'a> {
    own(json::parse_value(s(a, 0).as_bytes()).map_or(Value::Null, floats_only))
}

pub(super) fn must_from_json<'a>(a: &[Val<'a>]) -> FR<'a> {
    match json::parse_value(s(a, 0).as_bytes()) {
        Ok(v) => own(floats_only(v)),
        Err(e) => Err(e.to_string()),
    }
}

pub(super) fn to_json_w(a: &[Val<'_>], out: &mut Vec<u8>) -> Result<(), String> {
    json::write_value(out, a[0].value());
    Ok(())
}

pub(super) fn to_json<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut out = Vec::new();
    to_json_w(a, &mut out)?;
    bytes_to_string(out)
}

/// `json.MarshalIndent(v, "", "  ")`.
fn write_pretty(out: &mut Vec<u8>, v: &Value, depth: usize) {
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.resize(out.len() + 2 * depth, b' ');
    };
    match v {
        Value::Array(items) if !items.is_empty() => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                newline(out, depth + 1);
                write_pretty(out, item, depth + 1);
            }
            newline(out, depth);
            out.push(b']');
        }
        Value::Object(map) if !map.is_empty() => {
            out.push(b'{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                newline(out, depth + 1);
                json::write_str(out, k);
                out.extend_from_slice(b": ");
                write_pretty(out, item, depth + 1);
            }
            newline(out, depth);
            out.push(b'}');
        }
        other => json::write_value(out, other),
    }
}

pub(super) fn to_pretty_json_w(a: &[Val<'_>], out: &mut Vec<u8>) -> Result<(), String> {
    write_pretty(out, a[0].value(), 0);
    Ok(())
}

pub(super) fn to_pretty_json<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut out = Vec::new();
    to_pretty_json_w(a, &mut out)?;
    bytes_to_string(out)
}

pub(super) fn identity<'a>(a: &[Val<'a>]) -> FR<'a> {
    Ok(a[0].clone())
}

fn type_name(v: &Value) -> &'static str {
    if v.is_null() {
        "<nil>"
    } else {
        format::go_type(v)
    }
}

pub(super) fn type_of<'a>(a: &[Val<'a>]) -> FR<'a> {
    string(type_name(a[0].value()))
}

pub(super) fn type_is<'a>(a: &[Val<'a>]) -> FR<'a> {
    boolean(s(a, 0) == type_name(a[1].value()))
}

pub(super) fn type_is_like<'a>(a: &[Val<'a>]) -> FR<'a> {
    let (target, t) = (s(a, 0), type_name(a[1].value()));
    boolean(target == t || t.strip_prefix('*') == Some(target))
}

pub(super) fn kind_of<'a>(a: &[Val<'a>]) -> FR<'a> {
    string(format::go_kind(a[0].value()))
}

pub(super) fn kind_is<'a>(a: &[Val<'a>]) -> FR<'a> {
    boolean(s(a, 0) == format::go_kind(a[1].value()))
}

pub(super) fn deep_equal<'a>(a: &[Val<'a>]) -> FR<'a> {
    boolean(a[0].value() == a[1].value())
}

pub(super) fn fail<'a>(a: &[Val<'a>]) -> FR<'a> {
    Err(s(a, 0).to_owned())
}

// ---------------------------------------------------------------------------------------------
// Encodings

pub(super) fn b64enc<'a>(a: &[Val<'a>]) -> FR<'a> {
    string(base64::encode(s(a, 0).as_bytes()))
}

pub(super) fn b64dec<'a>(a: &[Val<'a>]) -> FR<'a> {
    match base64::decode_go(s(a, 0).as_bytes()) {
        Ok(bytes) => string(String::from_utf8_lossy(&bytes).into_owned()),
        Err(at) => string(format!("illegal base64 data at input byte {at}")),
    }
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

pub(super) fn b32enc<'a>(a: &[Val<'a>]) -> FR<'a> {
    let bytes = s(a, 0).as_bytes();
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    for chunk in bytes.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let n = buf.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < chars {
                out.push(BASE32[((n >> (35 - 5 * i)) & 31) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    string(out)
}

pub(super) fn b32dec<'a>(a: &[Val<'a>]) -> FR<'a> {
    let text = s(a, 0);
    let body = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(body.len() * 5 / 8);
    let (mut acc, mut bits) = (0u64, 0);
    for (i, c) in body.bytes().enumerate() {
        let Some(v) = BASE32.iter().position(|&x| x == c) else {
            return string(format!("illegal base32 data at input byte {i}"));
        };
        acc = (acc << 5) | v as u64;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if !text.len().is_multiple_of(8) {
        return string(format!(
            "illegal base32 data at input byte {}",
            text.len() / 8 * 8
        ));
    }
    string(String::from_utf8_lossy(&out).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Dictionaries

pub(super) fn dict<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut map = Map::new();
    for pair in a.chunks(2) {
        let key: Arc<str> = Arc::from(&*strval(pair[0].value()));
        let value = pair
            .get(1)
            .map_or_else(|| Value::string(""), |v| v.value().clone());
        map.insert(key, value);
    }
    own(Value::object(map))
}

pub(super) fn get<'a>(a: &[Val<'a>]) -> FR<'a> {
    let key = s(a, 1);
    if let Val::Ref(r) = &a[0] {
        let r: &'a Value = r;
        if let Some(v) = r.field(key) {
            return Ok(Val::Ref(v));
        }
    } else if let Some(v) = m(a, 0).and_then(|map| map.get(key)) {
        return own(v.clone());
    }
    string("")
}

pub(super) fn set<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut map = m(a, 0).map(|x| (**x).clone()).unwrap_or_default();
    map.insert(Arc::from(s(a, 1)), a[2].value().clone());
    own(Value::object(map))
}

pub(super) fn unset<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut map = m(a, 0).map(|x| (**x).clone()).unwrap_or_default();
    map.remove(s(a, 1));
    own(Value::object(map))
}

pub(super) fn has_key<'a>(a: &[Val<'a>]) -> FR<'a> {
    boolean(m(a, 0).is_some_and(|map| map.contains_key(s(a, 1))))
}

pub(super) fn pluck<'a>(a: &[Val<'a>]) -> FR<'a> {
    let key = s(a, 0);
    list_result(
        (1..a.len())
            .filter_map(|i| m(a, i).and_then(|map| map.get(key)).cloned())
            .collect(),
    )
}

pub(super) fn keys<'a>(a: &[Val<'a>]) -> FR<'a> {
    list_result(
        (0..a.len())
            .filter_map(|i| m(a, i))
            .flat_map(|map| map.keys().map(|k| Value::String(Arc::clone(k))))
            .collect(),
    )
}

pub(super) fn pick<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut out = Map::new();
    if let Some(map) = m(a, 0) {
        for i in 1..a.len() {
            if let Some((k, v)) = map.get_key_value(s(a, i)) {
                out.insert(Arc::clone(k), v.clone());
            }
        }
    }
    own(Value::object(out))
}

pub(super) fn omit<'a>(a: &[Val<'a>]) -> FR<'a> {
    let drop: Vec<&str> = (1..a.len()).map(|i| s(a, i)).collect();
    let out: Map = m(a, 0)
        .map(|map| {
            map.iter()
                .filter(|(k, _)| !drop.contains(&&***k))
                .map(|(k, v)| (Arc::clone(k), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    own(Value::object(out))
}

pub(super) fn values<'a>(a: &[Val<'a>]) -> FR<'a> {
    list_result(
        m(a, 0)
            .map(|map| map.values().cloned().collect())
            .unwrap_or_default(),
    )
}

pub(super) fn dig<'a>(a: &[Val<'a>]) -> FR<'a> {
    if a.len() < 3 {
        return Err("dig needs at least three arguments".to_owned());
    }
    let (keys, rest) = a.split_at(a.len() - 2);
    let default = &rest[0];
    let mut cur = match rest[1].value() {
        Value::Object(map) => map,
        other => {
            return Err(format!(
                "interface conversion: interface {{}} is {}, not map[string]interface {{}}",
                type_name(other)
            ));
        }
    };
    for (i, key) in keys.iter().enumerate() {
        let Value::String(key) = key.value() else {
            return Err(format!(
                "interface conversion: interface {{}} is {}, not string",
                type_name(key.value())
            ));
        };
        let Some(step) = cur.get(&**key) else {
            return Ok(default.clone());
        };
        if i == keys.len() - 1 {
            return own(step.clone());
        }
        cur = match step {
            Value::Object(map) => map,
            other => {
                return Err(format!(
                    "interface conversion: interface {{}} is {}, not map[string]interface {{}}",
                    type_name(other)
                ));
            }
        };
    }
    Ok(default.clone())
}

// ---------------------------------------------------------------------------------------------
// Lists

pub(super) fn list<'a>(a: &[Val<'a>]) -> FR<'a> {
    list_result(values_of(a).cloned().collect())
}

pub(super) fn append<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut items = list_items(a[0].value(), "push")?.into_owned();
    items.push(a[1].value().clone());
    list_result(items)
}

pub(super) fn prepend<'a>(a: &[Val<'a>]) -> FR<'a> {
    let items = list_items(a[0].value(), "prepend")?;
    let mut out = Vec::with_capacity(items.len() + 1);
    out.push(a[1].value().clone());
    out.extend_from_slice(&items);
    list_result(out)
}

pub(super) fn first<'a>(a: &[Val<'a>]) -> FR<'a> {
    list_items(a[0].value(), "find first")?;
    Ok(item(&a[0], 0))
}

pub(super) fn last<'a>(a: &[Val<'a>]) -> FR<'a> {
    let len = list_items(a[0].value(), "find last")?.len();
    Ok(if len == 0 {
        Val::Missing
    } else {
        item(&a[0], len - 1)
    })
}

pub(super) fn rest<'a>(a: &[Val<'a>]) -> FR<'a> {
    let items = list_items(a[0].value(), "find rest")?;
    list_result(items.iter().skip(1).cloned().collect())
}

pub(super) fn initial<'a>(a: &[Val<'a>]) -> FR<'a> {
    let items = list_items(a[0].value(), "find initial")?;
    let keep = items.len().saturating_sub(1);
    list_result(items[..keep].to_vec())
}

pub(super) fn reverse<'a>(a: &[Val<'a>]) -> FR<'a> {
    let items = list_items(a[0].value(), "find reverse")?;
    list_result(items.iter().rev().cloned().collect())
}

pub(super) fn uniq<'a>(a: &[Val<'a>]) -> FR<'a> {
    let items = list_items(a[0].value(), "find uniq")?;
    let mut out: Vec<Value> = Vec::new();
    for v in items.iter() {
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    list_result(out)
}

pub(super) fn without<'a>(a: &[Val<'a>]) -> FR<'a> {
    let items = list_items(a[0].value(), "find without")?;
    let drop: Vec<&Value> = values_of(&a[1..]).collect();
    list_result(
        items
            .iter()
            .filter(|v| !drop.contains(v))
            .cloned()
            .collect(),
    )
}

pub(super) fn has<'a>(a: &[Val<'a>]) -> FR<'a> {
    let haystack = a[1].value();
    if haystack.is_null() {
        return boolean(false);
    }
    let items = list_items(haystack, "find has")?;
    boolean(items.contains(a[0].value()))
}

pub(super) fn slice<'a>(a: &[Val<'a>]) -> FR<'a> {
    let v = a[0].value();
    let len = match v {
        Value::Array(items) => items.len(),
        Value::Bytes(b) => b.len(),
        Value::String(text) => text.len(),
        Value::Null => return Err("slice of untyped nil".to_owned()),
        other => {
            return Err(format!(
                "list should be type of slice or array but {}",
                format::go_kind(other)
            ));
        }
    };
    if len == 0 && !matches!(v, Value::String(_)) {
        return Ok(Val::Missing);
    }
    let start = a.get(1).map_or(0, |x| to_int64(x.value()));
    let end = a.get(2).map_or(len as i64, |x| to_int64(x.value()));
    if start < 0 || end < start || end > len as i64 {
        return Err(format!(
            "slice index out of range [{start}:{end}] with length {len}"
        ));
    }
    let (start, end) = (start as usize, end as usize);
    match v {
        Value::Array(items) => list_result(items[start..end].to_vec()),
        Value::Bytes(b) => own(Value::Bytes(Arc::from(&b[start..end]))),
        Value::String(text) => {
            string(String::from_utf8_lossy(&text.as_bytes()[start..end]).into_owned())
        }
        _ => Ok(Val::Missing),
    }
}

pub(super) fn concat<'a>(a: &[Val<'a>]) -> FR<'a> {
    let mut out = Vec::new();
    for v in values_of(a) {
        match v {
            Value::Array(items) => out.extend(items.iter().cloned()),
            Value::Bytes(b) => out.extend(b.iter().map(|x| Value::Int(i64::from(*x)))),
            other => {
                return Err(format!(
                    "Cannot concat type {} as list",
                    format::go_kind(other)
                ));
            }
        }
    }
    list_result(out)
}

pub(super) fn chunk<'a>(a: &[Val<'a>]) -> FR<'a> {
    let size = n(a, 0);
    let items = list_items(a[1].value(), "chunk")?;
    let Ok(size) = usize::try_from(size) else {
        return Err("chunk size must be positive".to_owned());
    };
    if size == 0 {
        return Err("chunk size must be positive".to_owned());
    }
    list_result(
        items
            .chunks(size)
            .map(|c| Value::array(c.to_vec()))
            .collect(),
    )
}
